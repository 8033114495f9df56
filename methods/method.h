// The method plugin contract (see DESIGN.md, "The method plugin contract").
//
// A method is one class in methods/<name>.cpp ending with KD_REGISTER_METHOD(Class).
// It declares its hyperparameters (with defaults and ranges), the taps it needs, how many
// teachers it uses, optional trainable parameters of its own, optional stages and an optional
// teacher-assistant chain; it computes UNWEIGHTED named loss terms plus their weights.
// The harness sums weight * value over terms, logs every term, and never branches on a name.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/model.h"

namespace kd {

// ---- hyperparameters ----------------------------------------------------------------------
struct ParamSpec {
  enum class Kind { Number, Integer, String, StringList, Bool, Json };
  std::string name;
  Kind kind = Kind::Number;
  nlohmann::json default_value;
  double min = 0, max = 0;           // inclusive range for Number/Integer
  std::vector<std::string> choices;  // allowed values for String (empty = any)
  std::string doc;
};

// Fully resolved hyperparameters of one method instance (defaults filled in, validated).
class MethodParams {
 public:
  MethodParams() = default;
  explicit MethodParams(nlohmann::json values) : values_(std::move(values)) {}
  double number(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  bool boolean(const std::string& name) const;
  const std::string& string(const std::string& name) const;
  std::vector<std::string> strings(const std::string& name) const;
  const nlohmann::json& json(const std::string& name) const;
  const nlohmann::json& all() const { return values_; }

 private:
  const nlohmann::json& at(const std::string& name) const;
  nlohmann::json values_ = nlohmann::json::object();
};

// ---- what a method sees and returns --------------------------------------------------------
struct MethodInput {
  const TapMap& student;                       // student taps, always including "logits"
  const std::vector<const TapMap*>& teachers;  // one per teacher the run uses; detached, eval mode
  const torch::Tensor& labels;                 // int64 [B]
  int stage = 0;                               // index into stages()
};

struct LossTerm {
  std::string name;     // "ce", "kd", "hint", "at", "feat", ...
  torch::Tensor value;  // scalar, unweighted
  double weight = 1.0;  // the weight the method's config gives this term
};
using LossTerms = std::vector<LossTerm>;

// A training stage. Most methods have one. FitNets two-stage has "hint" (trains the student
// only up to its guided tap on the hint term) then "kd".
struct StageSpec {
  std::string name = "main";
  int epochs = 0;               // 0 = the recipe's epochs
  std::string train_until_tap;  // empty = the whole student; else only parameters upstream of it
};

// One link of a teacher-assistant chain (progressive): train `model` from the previous teacher
// with `method` (a method config: {"name": ..., hyperparameters...}); it becomes the next teacher.
struct ChainLink {
  std::string model;
  nlohmann::json method;
};

// Shapes of the taps, from one dry forward pass, given to prepare() so a method can size its
// own modules (regressors). Each entry is the full tensor shape including the batch dimension.
using TapShapes = std::map<std::string, std::vector<int64_t>>;

class Method {
 public:
  virtual ~Method() = default;
  // Taps needed from the student ("logits" is always provided).
  virtual std::vector<std::string> student_taps() const { return {"logits"}; }
  // Taps needed from teacher `i` (empty = that teacher is not run at all).
  virtual std::vector<std::string> teacher_taps(int /*teacher_index*/) const { return {}; }
  // Called once before training, with tap shapes, on the device training runs on.
  virtual void prepare(const TapShapes& /*student*/, const std::vector<TapShapes>& /*teachers*/,
                       torch::Device /*device*/) {}
  // Trainable parameters the method owns (e.g. FitNets regressors); added to the optimizer,
  // saved with the student, switched between train/eval with it. nullptr = none.
  virtual std::shared_ptr<torch::nn::Module> module() { return nullptr; }
  virtual std::vector<StageSpec> stages() const { return {StageSpec{}}; }
  virtual std::vector<ChainLink> chain() const { return {}; }
  // The loss terms for one batch.
  virtual LossTerms compute(const MethodInput& in) = 0;
};

// ---- registry --------------------------------------------------------------------------------
using MethodFactory = std::function<std::unique_ptr<Method>(const MethodParams&)>;

// What a method declares about itself, built in one chain:
//   MethodInfo("logit_kd", "Hinton et al. 2015 ...").teachers(1, 1)
//       .number("temperature", 4.0, 0.1, 100.0, "softmax temperature T")
struct MethodInfo {
  std::string name;
  std::string description;
  std::string reference;  // paper and equation/section the formula comes from
  int min_teachers = 0, max_teachers = 0;
  std::vector<ParamSpec> params;
  MethodFactory factory;

  MethodInfo(std::string n, std::string d) : name(std::move(n)), description(std::move(d)) {}
  MethodInfo& cite(std::string r) {
    reference = std::move(r);
    return *this;
  }
  MethodInfo& teachers(int lo, int hi) {
    min_teachers = lo;
    max_teachers = hi;
    return *this;
  }
  MethodInfo& number(std::string n, double def, double lo, double hi, std::string doc);
  MethodInfo& integer(std::string n, int64_t def, int64_t lo, int64_t hi, std::string doc);
  MethodInfo& boolean(std::string n, bool def, std::string doc);
  MethodInfo& string(std::string n, std::string def, std::vector<std::string> choices, std::string doc);
  MethodInfo& strings(std::string n, std::vector<std::string> def, std::string doc);
  MethodInfo& json(std::string n, nlohmann::json def, std::string doc);
  const ParamSpec* find(const std::string& param) const;
};

class MethodRegistry {
 public:
  static MethodRegistry& instance();
  // Adds a method; a duplicate name throws (fails at start-up).
  void add(MethodInfo info);
  const MethodInfo* find(const std::string& name) const;
  // Throws ConfigError("<key_path>", "unknown method 'x' (known: ...)").
  const MethodInfo& get(const std::string& name, const std::string& key_path = "") const;
  std::vector<std::string> names() const;  // sorted
  // Validates `values` (a JSON object of hyperparameters) against the method's declaration:
  // unknown keys, wrong types and out-of-range values throw ConfigError naming
  // "<key_path>.<param>". Missing ones take their defaults.
  MethodParams resolve(const std::string& name, const nlohmann::json& values, const std::string& key_path) const;
  std::unique_ptr<Method> create(const std::string& name, const MethodParams& params) const;

 private:
  std::map<std::string, MethodInfo> methods_;
};

namespace detail {
struct MethodRegistrar {
  explicit MethodRegistrar(MethodInfo info) { MethodRegistry::instance().add(std::move(info)); }
};
}  // namespace detail

}  // namespace kd

#define KD_METHOD_CONCAT_INNER(a, b) a##b
#define KD_METHOD_CONCAT(a, b) KD_METHOD_CONCAT_INNER(a, b)
// Registers `Class`, which must have `static kd::MethodInfo info()` and a constructor taking
// `const kd::MethodParams&`. Put it at the end of the method's .cpp file (at namespace scope).
#define KD_REGISTER_METHOD(Class)                                                                     \
  static const ::kd::detail::MethodRegistrar KD_METHOD_CONCAT(kd_method_registrar_, __COUNTER__)([] { \
    ::kd::MethodInfo i = Class::info();                                                               \
    i.factory = [](const ::kd::MethodParams& p) { return std::make_unique<Class>(p); };               \
    return i;                                                                                         \
  }())
