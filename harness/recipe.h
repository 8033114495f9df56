// The training recipe of a run: optimizer, schedule, epochs and batch sizes, read from a config.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/json_reader.h"

namespace kd {

// The training recipe of a run (students) or of a teacher.
struct Recipe {
  int64_t epochs = 3;
  int64_t batch_size = 128;
  int64_t eval_batch_size = 256;  // evaluation batches (larger ones are slower on a CPU: cache misses)
  std::string optimizer = "sgd";  // sgd | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  double beta1 = 0.9, beta2 = 0.999;  // adamw
  std::string schedule = "cosine";    // constant | step | multistep | cosine
  std::vector<int64_t> milestones;    // multistep (epochs)
  int64_t step_size = 30;             // step (epochs)
  double gamma = 0.1;                 // step / multistep decay
  double warmup_epochs = 0;           // linear warm-up from lr/10... to lr (fraction of epochs allowed)
  double min_lr = 0;                  // cosine floor
  double grad_clip = 0;               // max global L2 norm; 0 = off
  json to_json() const;
};
// Parses a "recipe" object over `base` (keys not given keep base's values).
Recipe parse_recipe(const json& j, const std::string& path, const Recipe& base = Recipe{});

}  // namespace kd
