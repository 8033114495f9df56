// The method plugin contract (see DESIGN.md, "The method plugin contract").
//
// A method is one class in methods/<name>.cpp ending with KD_REGISTER_METHOD(Class). It has an
// options struct (`Class::Options`) whose fields hold its hyperparameters with their defaults, and a
// `static MethodInfo info()` that binds each field ONCE to its config name, range and doc, as LibTorch's
// TORCH_ARG keeps a field and its setter together:
//
//   struct Options { double temperature = 4.0; double alpha = 0.9; };
//   static MethodInfo info() {
//     return MethodInfo::of<LogitKD>("logit_kd", "Hinton et al. 2015 ...")
//         .teachers(1, 1)
//         .number("temperature", &Options::temperature, 0.05, 100.0, "softmax temperature T")
//         .number("alpha", &Options::alpha, 0.0, 1.0, "weight of the KD term");
//   }
//   explicit LogitKD(const Options& o);
//
// A field bound with the wrong type does not compile; a field bound twice, or a name used twice, fails
// at start-up (registration), never mid-sweep. An Options struct may have `void validate() const` that
// checks relations between values (throwing ConfigError naming the key); it runs when a config is read.
//
// A method declares the taps it needs, how many teachers it uses, trainable parameters of its own,
// stages and a teacher-assistant chain; it computes UNWEIGHTED named loss terms plus their weights.
// The harness sums weight * value over terms, logs every term, and never branches on a name.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeindex>
#include <vector>

#include "base/errors.h"
#include "base/taps.h"
#include "methods/form.h"

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
  // Left out of the resolved hyperparameters (so out of run ids) while it has its default value: for an
  // option added to a method after runs of it were recorded, so that those runs keep their ids.
  bool omitted_at_default = false;
};

// The resolved hyperparameters of one method instance as JSON (defaults filled in, validated): what a
// run's id hashes and its record shows. Methods receive their typed Options, never this.
class MethodParams {
 public:
  MethodParams() = default;
  explicit MethodParams(nlohmann::json values) : values_(std::move(values)) {}
  const nlohmann::json& all() const { return values_; }

 private:
  nlohmann::json values_ = nlohmann::json::object();
};

// ---- what a method sees and returns --------------------------------------------------------
struct MethodInput {
  const TapMap& student;                       // student taps, always including "logits"
  const std::vector<const TapMap*>& teachers;  // one per teacher the run uses; detached, eval mode
  const torch::Tensor& labels;                 // int64 [B]
  const torch::Tensor& indices;                // int64 [B]: the samples' indices in the training split
  int stage = 0;                               // index into stages()
  int64_t epoch = 0;                           // the run's epoch, 0-based, counted over all stages
  int64_t stage_epoch = 0;                     // the epoch within the stage, 0-based
  int64_t step = 0;                            // the step within the epoch, 0-based
  int64_t steps_per_epoch = 1;
};

struct LossTerm {
  std::string name;     // "ce", "kd", "hint", "at", "feat", ...
  torch::Tensor value;  // scalar, unweighted
  double weight = 1.0;  // the weight the method's config gives this term
};
using LossTerms = std::vector<LossTerm>;

// A training stage. Most methods have one. FitNets two-stage has "hint" (trains the student only up
// to its guided tap on the hint term) then "kd".
struct StageSpec {
  std::string name = "main";
  int epochs = 0;                 // 0 = the recipe's epochs
  std::string train_until_tap{};  // empty = the whole student; else only parameters upstream of it
  bool train_student = true;      // false: only the method's own parameters train (e.g. a paraphraser); the
                                  // student is frozen and runs in eval mode (its batch-norm statistics are kept)
  // Which of the method's own modules (names of module()'s direct children) train in this stage; empty = all
  // of module(). E.g. factor transfer trains its paraphraser in stage 1 and only its translator in stage 2.
  std::vector<std::string> train_modules{};
  // Of those, the ones that do NOT train in this stage and run in eval mode (RepDistiller's module_list[i].eval()
  // for AB's connectors and FT's paraphraser after their initialisation stage).
  std::vector<std::string> eval_modules{};
  double lr = 0;  // > 0: this stage's base learning rate instead of the recipe's (the recipe's schedule shape)
};

// One link of a teacher-assistant chain: train zoo model `model` from the previous teacher with method
// `method` and hyperparameters `params`; it becomes the next teacher. `key` names where the link comes
// from in the method's hyperparameters (for messages), e.g. "assistants[0]".
struct ChainLink {
  std::string model;
  std::string method;
  nlohmann::json params = nlohmann::json::object();
  std::string key;
};

// What prepare() is given, once per run before training, on the device training runs on.
struct PrepareContext {
  TapShapes student;                // shapes of every student tap
  std::vector<TapShapes> teachers;  // shapes of every tap of each teacher the run uses
  torch::Device device = torch::kCPU;
  int64_t train_size = 0;   // samples in the training split
  int64_t num_classes = 0;  // classes of the data set
  // int64 [train_size] on the CPU: the label of every sample of the training split, by the index that
  // MethodInput.indices uses (e.g. CRD draws its negatives from the other classes). May be undefined (kdbench
  // loss computes one batch from tensors alone).
  torch::Tensor train_labels;
  // The run's teachers (frozen, eval mode), e.g. to read batch-norm statistics; never to train. May be empty.
  std::vector<std::shared_ptr<torch::nn::Module>> teacher_modules;
  // Per teacher in teacher_modules: pre-activation tap -> the name (in that module's named_modules()) of the
  // batch norm whose output the tap is (for a residual sum, the batch norm of the residual branch), for the taps
  // that have one (models/model.h, TapModel::tap_norm).
  std::vector<std::map<std::string, std::string>> teacher_tap_norms;
};

class Method {
 public:
  virtual ~Method() = default;
  // Taps needed from the student ("logits" is always provided).
  virtual std::vector<std::string> student_taps() const { return {"logits"}; }
  // Taps needed from teacher `i` (empty = that teacher is not run at all).
  virtual std::vector<std::string> teacher_taps(int /*teacher_index*/) const { return {}; }
  // Called once before training.
  virtual void prepare(const PrepareContext& /*ctx*/) {}
  // Trainable parameters (and buffers) the method owns (e.g. FitNets regressors); added to the
  // optimizer, counted as its extra parameters, saved beside the student's checkpoint, switched
  // between train/eval with it. nullptr = none.
  virtual std::shared_ptr<torch::nn::Module> module() { return nullptr; }
  virtual std::vector<StageSpec> stages() const { return {StageSpec{}}; }
  virtual std::vector<ChainLink> chain() const { return {}; }
  // The loss terms for one batch.
  virtual LossTerms compute(const MethodInput& in) = 0;
  // Whether compute() may be captured in a CUDA graph and replayed for every step of an epoch: it launches
  // only device work (no .item(), no host-dependent branch on tensor values, no new host-to-device copies), its
  // term weights change at most once per epoch, and it reads MethodInput.step not at all. A method that breaks
  // one of these returns false; its lockstep group then runs eagerly.
  virtual bool graph_safe() const { return true; }
};

// ---- option pieces ---------------------------------------------------------------------------
// What many methods declare alike, each a member of the method's Options declared in one line of info()
// (MethodInfo::kd_term, paired_taps, form) with its names, ranges, docs and validation:
//
//   struct Options { PairedTaps taps{{"block1", "block2"}, {"block1", "block2"}}; double beta = 1e3; KdTerm kd; };
//   ... .paired_taps(&Options::taps, "student taps", "teacher taps").kd_term(&Options::kd) ...
//   return ce_own_kd(in, {{"at", at, o_.beta}}, o_.kd);   // methods/common_terms.h
//
// The optional Hinton KD term beside a method's own terms: `alpha` (CE gets 1 - alpha; no kd term at 0) and
// `temperature`.
struct KdTerm {
  double alpha = 0.0;
  double temperature = 4.0;
};
// Student and teacher taps paired in order (`student_taps`, `teacher_taps`): as many of each, at least min_pairs.
struct PairedTaps {
  std::vector<std::string> student, teacher;
};

// ---- declaration ---------------------------------------------------------------------------
namespace detail {
template <class O, class = void>
struct HasValidate : std::false_type {};
template <class O>
struct HasValidate<O, std::void_t<decltype(std::declval<const O&>().validate())>> : std::true_type {};

// The fields of one Options struct bound to their config names: reads resolved JSON into the struct.
template <class O>
struct OptionsBinding {
  std::vector<std::pair<std::string, std::function<void(O&, const nlohmann::json&)>>> setters;
  std::vector<std::function<void(const O&)>> checks;  // the pieces' validation, before Options::validate
  O read(const nlohmann::json& values) const {
    O o;  // a name absent from `values` (a parameter omitted at its default) keeps the field's default
    for (const auto& [name, set] : setters)
      if (values.contains(name)) set(o, values.at(name));
    return o;
  }
};
}  // namespace detail

class Method;
// What a method declares about itself, built in one chain (see the top of this file).
struct MethodInfo {
  std::string name;
  std::string description;
  std::string citation;  // paper and equation/section the formula comes from; the reference code
  int min_teachers = 0, max_teachers = 0;
  bool reference = false;  // the from-scratch student every method is compared with (also trains teachers)
  std::vector<ParamSpec> params;
  // Builds the method from resolved hyperparameters (every declared name present).
  std::function<std::unique_ptr<Method>(const nlohmann::json&)> factory;
  // Checks relations between resolved values (Options::validate), without building the method.
  std::function<void(const nlohmann::json&)> validate;
  // A method loaded from a file at run time (a Python plugin, pybridge/): the file as the config or command line
  // named it, its absolute path and the SHA-256 of its content. Empty for native methods. A run of such a method
  // records the file and its digest, and its id covers the digest, so a changed file gives new runs.
  std::string source_file, source_path, source_sha256;

  // A method declared at run time rather than by a C++ Options struct (a Python plugin): its hyperparameters are
  // added with param(), and the caller sets `factory` and `validate`.
  static MethodInfo declared(std::string name, std::string description) {
    return MethodInfo(std::move(name), std::move(description));
  }
  MethodInfo& param(ParamSpec p) {
    for (const auto& q : params)
      if (q.name == p.name)
        throw std::logic_error("method '" + name + "': hyperparameter '" + p.name + "' is declared twice");
    params.push_back(std::move(p));
    return *this;
  }

  template <class M>
  static MethodInfo of(std::string name, std::string description) {
    using O = typename M::Options;
    static_assert(std::is_constructible_v<M, const O&>, "a method is constructed from its Options");
    MethodInfo i(std::move(name), std::move(description));
    auto binding = std::make_shared<detail::OptionsBinding<O>>();
    i.options_type_ = std::type_index(typeid(O));
    i.binding_ = binding;
    i.factory = [binding](const nlohmann::json& v) -> std::unique_ptr<Method> {
      return std::make_unique<M>(binding->read(v));
    };
    i.validate = [binding](const nlohmann::json& v) {
      O o = binding->read(v);
      for (const auto& check : binding->checks) check(o);
      if constexpr (detail::HasValidate<O>::value) o.validate();
    };
    return i;
  }

  MethodInfo& cite(std::string r) {
    citation = std::move(r);
    return *this;
  }
  MethodInfo& teachers(int lo, int hi) {
    min_teachers = lo;
    max_teachers = hi;
    return *this;
  }
  // Declares this method the reference: the student trained from the labels alone. Reports measure
  // every method's gain against it, and teachers are trained with it. One method declares it.
  MethodInfo& reference_student() {
    reference = true;
    return *this;
  }
  template <class O>
  MethodInfo& number(std::string n, double O::*field, double lo, double hi, std::string doc) {
    auto& p = add<O>(std::move(n), ParamSpec::Kind::Number, O{}.*field, std::move(doc), field);
    p.min = lo;
    p.max = hi;
    return *this;
  }
  template <class O>
  MethodInfo& integer(std::string n, int64_t O::*field, int64_t lo, int64_t hi, std::string doc) {
    auto& p = add<O>(std::move(n), ParamSpec::Kind::Integer, O{}.*field, std::move(doc), field);
    p.min = static_cast<double>(lo);
    p.max = static_cast<double>(hi);
    return *this;
  }
  template <class O>
  MethodInfo& boolean(std::string n, bool O::*field, std::string doc) {
    add<O>(std::move(n), ParamSpec::Kind::Bool, O{}.*field, std::move(doc), field);
    return *this;
  }
  // A string; `choices` empty = any string.
  template <class O>
  MethodInfo& string(std::string n, std::string O::*field, std::vector<std::string> choices, std::string doc) {
    auto& p = add<O>(std::move(n), ParamSpec::Kind::String, O{}.*field, std::move(doc), field);
    p.choices = std::move(choices);
    return *this;
  }
  template <class O>
  MethodInfo& strings(std::string n, std::vector<std::string> O::*field, std::string doc) {
    add<O>(std::move(n), ParamSpec::Kind::StringList, O{}.*field, std::move(doc), field);
    return *this;
  }
  template <class O>
  MethodInfo& json(std::string n, nlohmann::json O::*field, std::string doc) {
    add<O>(std::move(n), ParamSpec::Kind::Json, O{}.*field, std::move(doc), field);
    return *this;
  }
  // The pieces (see "option pieces" above). kd_term: `alpha` in [0, 1] and `temperature` in [0.05, 100]; `stage`
  // prefixes their docs where the term belongs to one stage ("main stage: ").
  template <class O>
  MethodInfo& kd_term(KdTerm O::*piece, const std::string& stage = "") {
    nested(piece, &KdTerm::alpha, "alpha", ParamSpec::Kind::Number,
           stage + (stage.empty() ? "weight of an added KD term" : "weight of a KD term") + "; CE gets 1 - alpha")
        .max = 1.0;
    nested(piece, &KdTerm::temperature, "temperature", ParamSpec::Kind::Number, "KD temperature when alpha > 0");
    params.back().min = 0.05;
    params.back().max = 100.0;
    return *this;
  }
  // `student_taps` and `teacher_taps`; a config giving lists of different lengths, or fewer than min_pairs, is
  // one ConfigError naming teacher_taps (or student_taps).
  template <class O>
  MethodInfo& paired_taps(PairedTaps O::*piece, std::string student_doc, std::string teacher_doc,
                          size_t min_pairs = 1) {
    nested(piece, &PairedTaps::student, "student_taps", ParamSpec::Kind::StringList, std::move(student_doc));
    nested(piece, &PairedTaps::teacher, "teacher_taps", ParamSpec::Kind::StringList, std::move(teacher_doc));
    binding<O>()->checks.push_back([piece, min_pairs](const O& o) {
      const PairedTaps& t = o.*piece;
      if (t.student.size() < min_pairs)
        throw ConfigError("student_taps", "needs at least " + std::to_string(min_pairs) + " tap" +
                                              (min_pairs == 1 ? "" : "s") + ", got " +
                                              std::to_string(t.student.size()));
      if (t.teacher.size() != t.student.size())
        throw ConfigError("teacher_taps", "needs as many taps as student_taps (" + std::to_string(t.student.size()) +
                                              "), got " + std::to_string(t.teacher.size()));
    });
    return *this;
  }
  // A Form (methods/form.h) as the string option `n`: "reference" or "paper".
  template <class O>
  MethodInfo& form(std::string n, Form O::*field, std::string doc) {
    const auto to_json = [](Form f) { return nlohmann::json(f == Form::Paper ? "paper" : "reference"); };
    auto& p = declare<O>(std::move(n), ParamSpec::Kind::String, to_json(O{}.*field), std::move(doc), field_id(field),
                         [field](O& o, const nlohmann::json& v) {
                           o.*field = v.template get<std::string>() == "paper" ? Form::Paper : Form::Reference;
                         });
    p.choices = {"reference", "paper"};
    return *this;
  }

  // Marks the hyperparameter declared last as omitted from resolved values (and run ids) while at its default
  // (ParamSpec::omitted_at_default): for options added to a method that already had recorded runs.
  MethodInfo& omitted_at_default() {
    if (params.empty()) throw std::logic_error("method '" + name + "': omitted_at_default() before any hyperparameter");
    params.back().omitted_at_default = true;
    return *this;
  }
  const ParamSpec* find(const std::string& param) const;

 private:
  MethodInfo(std::string n, std::string d) : name(std::move(n)), description(std::move(d)) {}
  template <class O, class T>
  ParamSpec& add(std::string n, ParamSpec::Kind kind, const T& def, std::string doc, T O::*field) {
    return declare<O>(std::move(n), kind, def, std::move(doc), field_id(field),
                      [field](O& o, const nlohmann::json& v) { o.*field = v.template get<T>(); });
  }
  // A field of a piece (a member struct of the Options).
  template <class O, class P, class T>
  ParamSpec& nested(P O::*piece, T P::*field, std::string n, ParamSpec::Kind kind, std::string doc) {
    static const O probe{};
    const size_t id = field_id(piece) + field_id(field);
    return declare<O>(std::move(n), kind, probe.*piece.*field, std::move(doc), id,
                      [piece, field](O& o, const nlohmann::json& v) { o.*piece.*field = v.template get<T>(); });
  }
  template <class O>
  detail::OptionsBinding<O>* binding() {
    if (!binding_ || options_type_ != std::type_index(typeid(O)))
      throw std::logic_error("method '" + name +
                             "': an option is bound to a field of another struct than the "
                             "method's Options");
    return static_cast<detail::OptionsBinding<O>*>(binding_.get());
  }
  // Every declaration ends here: the name and the field (its byte offset in the Options) bound once each.
  template <class O>
  ParamSpec& declare(std::string n, ParamSpec::Kind kind, nlohmann::json def, std::string doc, size_t id,
                     std::function<void(O&, const nlohmann::json&)> set) {
    auto* b = binding<O>();
    if (find(n)) throw std::logic_error("method '" + name + "': hyperparameter '" + n + "' is declared twice");
    for (const auto& p : params)
      if (bound_fields_.count(p.name) && bound_fields_.at(p.name) == id)
        throw std::logic_error("method '" + name + "': field of '" + p.name + "' is bound again as '" + n + "'");
    bound_fields_[n] = id;
    b->setters.emplace_back(n, std::move(set));
    ParamSpec p;
    p.name = std::move(n);
    p.kind = kind;
    p.default_value = std::move(def);
    p.doc = std::move(doc);
    params.push_back(std::move(p));
    return params.back();
  }
  // The byte offset of a field in its struct: identifies it without needing a comparison of member pointers
  // of different types.
  template <class O, class T>
  static size_t field_id(T O::*field) {
    static const O probe{};
    return static_cast<size_t>(reinterpret_cast<const char*>(&(probe.*field)) - reinterpret_cast<const char*>(&probe));
  }
  std::type_index options_type_ = std::type_index(typeid(void));
  std::shared_ptr<void> binding_;
  std::map<std::string, size_t> bound_fields_;
};

// ---- registry --------------------------------------------------------------------------------
class MethodRegistry {
 public:
  static MethodRegistry& instance();
  // Adds a method; a duplicate name, a second reference method or a declaration without a factory
  // throws (fails at start-up).
  void add(MethodInfo info);
  const MethodInfo* find(const std::string& name) const;
  // Throws ConfigError("<key_path>", "unknown method 'x' (known: ...)").
  const MethodInfo& get(const std::string& name, const std::string& key_path = "") const;
  // The method that declared itself the reference (the from-scratch student).
  const MethodInfo& reference() const;
  std::vector<std::string> names() const;  // sorted
  // Validates `values` (a JSON object of hyperparameters) against the method's declaration:
  // unknown keys, wrong types and out-of-range values throw ConfigError naming
  // "<key_path>.<param>"; then the Options' own validate(). Missing ones take their defaults (those declared
  // omitted_at_default() are left out while at their default).
  // Builds no method.
  MethodParams resolve(const std::string& name, const nlohmann::json& values, const std::string& key_path) const;
  // Builds a method from resolved hyperparameters: the one place a method instance is made.
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
// Registers `Class`, which must have `static kd::MethodInfo info()` (made with MethodInfo::of<Class>) and a
// constructor taking `const Class::Options&`. Put it at the end of the method's .cpp file (namespace scope).
#define KD_REGISTER_METHOD(Class) \
  static const ::kd::detail::MethodRegistrar KD_METHOD_CONCAT(kd_method_registrar_, __COUNTER__)(Class::info())
