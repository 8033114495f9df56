#include "harness/group_channel.h"

#include <nlohmann/json.hpp>

namespace kd {

namespace {
std::string key(int n) {
  return "group/" + std::to_string(n);
}
}  // namespace

void GroupChannel::announce(const AnnouncedGroup& group) {
  nlohmann::json msg{{"runs", group.runs}, {"teachers", group.teachers}};
  replicas_.publish(key(sent_++), msg.dump());
}

void GroupChannel::end() {
  replicas_.publish(key(sent_), nlohmann::json{{"end", true}}.dump());
  replicas_.leave();
}

std::optional<AnnouncedGroup> GroupChannel::next() {
  nlohmann::json msg = nlohmann::json::parse(replicas_.receive(key(received_++)));
  if (msg.value("end", false)) return std::nullopt;
  AnnouncedGroup g;
  g.runs = msg.at("runs").get<std::vector<std::string>>();
  g.teachers = msg.at("teachers").get<std::map<std::string, std::string>>();
  return g;
}

}  // namespace kd
