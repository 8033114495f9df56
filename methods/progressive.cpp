// progressive: teacher-assistant KD (Mirzadeh et al. 2020, "Improved Knowledge Distillation via
// Teacher Assistant", Sec. 3): teacher -> TA_1 -> ... -> student. chain() declares one link per
// assistant (trained with `link_method` from the previous model); the harness trains them as runs of
// their own and hands this method the last assistant as its teacher. The final link is logit KD:
// alpha * T^2 * KL(p_TA || p_s) + (1 - alpha) * CE.
#include "base/errors.h"
#include "methods/losses.h"
#include "methods/method.h"

namespace kd {

class Progressive final : public Method {
 public:
  struct Options {
    std::vector<std::string> assistants{"cnn_medium"};
    nlohmann::json link_method{{"name", "logit_kd"}, {"temperature", 4.0}, {"alpha", 0.9}};
    double temperature = 4.0;
    double alpha = 0.9;
    void validate() const {
      if (assistants.empty()) throw ConfigError("assistants", "needs at least one assistant model");
      if (!link_method.is_object() || !link_method.contains("name") || !link_method["name"].is_string())
        throw ConfigError("link_method", "expected an object with a \"name\" (a registered method)");
      // Each link trains one assistant from one teacher; a link cannot itself be a chain.
      const std::string link_name = link_method["name"].get<std::string>();
      const MethodInfo& li = MethodRegistry::instance().get(link_name, "link_method.name");
      if (li.min_teachers > 1 || li.max_teachers < 1 || link_name == "progressive")
        throw ConfigError("link_method.name", "method '" + link_name + "' cannot train an assistant from one teacher");
      nlohmann::json params = link_method;
      params.erase("name");
      MethodRegistry::instance().resolve(link_name, params, "link_method");
    }
  };
  static MethodInfo info() {
    return MethodInfo::of<Progressive>("progressive",
                                       "Mirzadeh et al. 2020: teacher -> assistant(s) -> student, each link a KD stage")
        .cite("Mirzadeh et al. 2020, Sec. 3 (TAKD)")
        .teachers(1, 1)
        .strings("assistants", &Options::assistants, "zoo models of the assistants, largest first")
        .json("link_method", &Options::link_method, "method config that trains each assistant from the previous model")
        .number("temperature", &Options::temperature, 0.05, 100.0,
                "temperature of the last link (assistant -> student)")
        .number("alpha", &Options::alpha, 0.0, 1.0, "weight of the KD term of the last link; CE gets 1 - alpha");
  }
  explicit Progressive(const Options& o)
      : assistants_(o.assistants), link_(o.link_method), T_(o.temperature), alpha_(o.alpha) {}
  std::vector<std::string> teacher_taps(int) const override { return {"logits"}; }
  std::vector<ChainLink> chain() const override {
    nlohmann::json params = link_;
    const std::string name = params["name"];
    params.erase("name");
    std::vector<ChainLink> links;
    for (size_t i = 0; i < assistants_.size(); ++i)
      links.push_back({assistants_[i], name, params, "assistants[" + std::to_string(i) + "]"});
    return links;
  }
  LossTerms compute(const MethodInput& in) override {
    const auto& s = in.student.at("logits");
    return {{"ce", torch::cross_entropy_loss(s, in.labels), 1.0 - alpha_},
            {"kd", losses::soft_kl(s, in.teachers.at(0)->at("logits"), T_), alpha_}};
  }

 private:
  std::vector<std::string> assistants_;
  nlohmann::json link_;
  double T_, alpha_;
};

}  // namespace kd
KD_REGISTER_METHOD(kd::Progressive);
