#include "harness/recipe.h"

#include "base/errors.h"

namespace kd {

json Recipe::to_json() const {
  return json{{"epochs", epochs},
              {"batch_size", batch_size},
              {"eval_batch_size", eval_batch_size},
              {"optimizer", optimizer},
              {"lr", lr},
              {"momentum", momentum},
              {"nesterov", nesterov},
              {"weight_decay", weight_decay},
              {"beta1", beta1},
              {"beta2", beta2},
              {"schedule", schedule},
              {"milestones", milestones},
              {"step_size", step_size},
              {"gamma", gamma},
              {"warmup_epochs", warmup_epochs},
              {"min_lr", min_lr},
              {"grad_clip", grad_clip}};
}

Recipe parse_recipe(const json& j, const std::string& path, const Recipe& base) {
  Recipe r = base;
  ObjectReader rd(j, path);
  r.epochs = rd.integer("epochs", base.epochs, 1, 100000);
  r.batch_size = rd.integer("batch_size", base.batch_size, 1, 1 << 20);
  r.eval_batch_size = rd.integer("eval_batch_size", base.eval_batch_size, 1, 1 << 20);
  r.optimizer = rd.string("optimizer", base.optimizer, {"sgd", "adamw"});
  r.lr = rd.number("lr", base.lr, 0, 100);
  r.momentum = rd.number("momentum", base.momentum, 0, 0.9999);
  r.nesterov = rd.boolean("nesterov", base.nesterov);
  r.weight_decay = rd.number("weight_decay", base.weight_decay, 0, 1);
  r.beta1 = rd.number("beta1", base.beta1, 0, 0.9999);
  r.beta2 = rd.number("beta2", base.beta2, 0, 0.99999);
  r.schedule = rd.string("schedule", base.schedule, {"constant", "step", "multistep", "cosine"});
  r.milestones = rd.integers("milestones", base.milestones, 1, 100000);
  r.step_size = rd.integer("step_size", base.step_size, 1, 100000);
  r.gamma = rd.number("gamma", base.gamma, 0, 1);
  r.warmup_epochs = rd.number("warmup_epochs", base.warmup_epochs, 0, 1000);
  r.min_lr = rd.number("min_lr", base.min_lr, 0, 100);
  r.grad_clip = rd.number("grad_clip", base.grad_clip, 0, 1e9);
  rd.finish();
  if (r.nesterov && (r.momentum <= 0 || r.optimizer != "sgd"))
    throw ConfigError(rd.path("nesterov"), "Nesterov momentum needs optimizer 'sgd' with momentum > 0");
  if (r.warmup_epochs > static_cast<double>(r.epochs))
    throw ConfigError(rd.path("warmup_epochs"), "warm-up is longer than the " + std::to_string(r.epochs) + " epochs");
  return r;
}

}  // namespace kd
