// Data-parallel parts on real c10d (Gloo over loopback): two replicas in two threads of this process.
// The averaged gradient equals the gradient of the mean over the global batch (unequal shares included); a
// replica whose loss failed makes every replica fail; rank 0's buffers reach every replica; sums add up; a
// loader's parts of a batch are the batch.
#include <gtest/gtest.h>

#include <thread>

#include "datasets/dataset.h"
#include "harness/distributed.h"
#include "test_util.h"

namespace {

torch::nn::Linear make_model() {
  torch::manual_seed(1);
  return torch::nn::Linear(5, 3);
}

TEST(DataParallel, GradientsBuffersAndSumsOverTwoGlooReplicas) {
  torch::manual_seed(0);
  const auto x = torch::randn({10, 5});
  const auto y = torch::randint(0, 3, {10});
  // One process, the global batch of 10.
  auto ref = make_model();
  torch::nn::functional::cross_entropy(ref(x), y).backward();

  const int port = kd::test::free_port();
  std::vector<torch::Tensor> weight_grad(2), bias_grad(2), running_mean(2), rank0_mean(2);
  std::vector<bool> all_ok(2), one_failed(2);
  std::vector<double> sums(2);
  // Made here, not in the replicas' threads: the seeded global generator is one for the whole process, and two
  // threads drawing from it at once would give the replicas different weights.
  std::vector<torch::nn::Linear> models{make_model(), make_model()};
  auto replica = [&](int rank) {
    kd::ReplicaEnv env;
    env.rank = rank;
    env.size = 2;
    env.master_port = port;
    kd::DataParallel dp(env, torch::kCPU);
    EXPECT_STREQ(dp.backend(), "gloo");
    // Unequal shares, as the last batch of an epoch may give: 6 and 4 images.
    const int64_t lo = rank == 0 ? 0 : 6, n = rank == 0 ? 6 : 4;
    auto& m = models[rank];
    torch::nn::functional::cross_entropy(m(x.narrow(0, lo, n)), y.narrow(0, lo, n)).backward();
    all_ok[rank] = dp.average_gradients(m->parameters(), n, true);
    weight_grad[rank] = m->weight.grad().clone();
    bias_grad[rank] = m->bias.grad().clone();
    one_failed[rank] = dp.average_gradients(m->parameters(), n, rank == 0);  // rank 1's loss "was NaN"

    // Batch norm: each replica's running statistics come from its own share; broadcast makes them rank 0's.
    torch::nn::BatchNorm1d bn(5);
    bn->train();
    bn(x.narrow(0, lo, n));
    rank0_mean[rank] = bn->running_mean.clone();
    kd::broadcast_buffers(dp, *bn);
    running_mean[rank] = bn->running_mean.clone();

    std::vector<double> v{rank + 1.0, 10.0 * rank};
    dp.sum(v);
    sums[rank] = v[0] + v[1];
  };
  std::thread second(replica, 1);
  replica(0);
  second.join();

  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(all_ok[r]);
    EXPECT_FALSE(one_failed[r]) << "replica " << r << " went on while the other's loss had failed";
    EXPECT_TRUE(torch::allclose(weight_grad[r], ref->weight.grad(), 1e-6, 1e-7)) << "rank " << r;
    EXPECT_TRUE(torch::allclose(bias_grad[r], ref->bias.grad(), 1e-6, 1e-7)) << "rank " << r;
    EXPECT_TRUE(torch::equal(running_mean[r], rank0_mean[0])) << "rank " << r;
    EXPECT_DOUBLE_EQ(sums[r], 3.0 + 10.0);
  }
  EXPECT_FALSE(torch::equal(rank0_mean[0], rank0_mean[1])) << "the shares' own statistics differ before";
}

// A loader split into parts gives, batch by batch, exactly the whole batch's samples in order.
TEST(DataParallel, LoaderPartsMakeTheWholeBatch) {
  auto data = kd::open_dataset({{"name", "synthetic"},
                                {"num_classes", 3},
                                {"train_size", 100},
                                {"test_size", 10},
                                {"image_size", 8},
                                {"channels", 1},
                                {"seed", 1}});
  kd::LoaderOptions o;
  o.batch_size = 16;
  o.seed = 5;
  o.workers = 0;
  kd::Loader whole(data.train, o);
  std::vector<std::unique_ptr<kd::Loader>> parts;
  for (int p = 0; p < 3; ++p) {
    kd::LoaderOptions po = o;
    po.part_index = p;
    po.part_count = 3;
    parts.push_back(std::make_unique<kd::Loader>(data.train, po));
  }
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    whole.start_epoch(epoch);
    for (auto& p : parts) p->start_epoch(epoch);
    kd::Batch b;
    int batches = 0;
    while (whole.next(b)) {
      std::vector<torch::Tensor> xs, idx;
      for (auto& p : parts) {
        kd::Batch pb;
        ASSERT_TRUE(p->next(pb));
        xs.push_back(pb.x);
        idx.push_back(pb.indices);
      }
      EXPECT_TRUE(torch::equal(torch::cat(idx), b.indices)) << "epoch " << epoch << " batch " << batches;
      EXPECT_TRUE(torch::equal(torch::cat(xs), b.x));
      ++batches;
    }
    EXPECT_EQ(batches, whole.batches_per_epoch());
    for (auto& p : parts) {
      kd::Batch pb;
      EXPECT_FALSE(p->next(pb));
    }
  }
}

}  // namespace
