// `kdbench runs DIR|URL`: the runs of a sweep folder or a PostgreSQL store as a table, CSV or JSON Lines.
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"
#include "base/fsutil.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "reports/writers.h"
#include "store/store.h"
#include "store/store_url.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd {

std::string store_location_of(const std::string& where) {
  if (is_store_url(where)) return where;
  const std::string p = SweepLayout(where).store();
  if (!fs::exists(p)) throw DataError(where, "no results store here (expected results.db from `kdbench sweep`)");
  return p;
}

void refuse_password_on_command_line(const std::string& location, const std::string& key) {
  refuse_password_in_store_url(location, key,
                               "a command line is seen by every user of this machine (ps) and kept in shell "
                               "histories; give the password in PGPASSWORD or ~/.pgpass (or the whole URL in the "
                               "environment's KDBENCH_STORE)");
}

std::string store_from_environment(const std::string& flag) {
  if (!flag.empty()) {
    refuse_password_on_command_line(flag, "--store");
    return flag;
  }
  const char* env = std::getenv("KDBENCH_STORE");
  return env ? env : "";
}

namespace {

std::string csv_field(const std::string& s) {
  return csv_cell(s);
}

}  // namespace

int cmd_runs(const std::string& where, const std::string& format, const std::string& out_file) {
  auto opened = open_store(store_location_of(where), /*read_only=*/true);
  ResultsStore& store = *opened;
  std::ostringstream out;
  auto runs = store.runs();
  if (format == "table") {
    out << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4} {:>8} {:>8} {:>8}  {}\n", "run", "role", "status",
                       "name", "model", "seed", "val", "test", "seconds", "setting");
    int done = 0, failed = 0;
    for (const auto& r : runs) {
      auto f = store.finals(r.id);
      auto num = [&](const char* k) { return f.count(k) ? fmt::format("{:.2f}", f[k]) : std::string("-"); };
      out << fmt::format("{:<12} {:<9} {:<8} {:<14} {:<12} {:>4} {:>8} {:>8} {:>8.1f}  {}\n", r.id.substr(0, 12),
                         to_string(r.role), to_string(r.status), r.name, r.model, r.seed, num("final.val.top1"),
                         num("final.test.top1"), r.wall_seconds, r.setting);
      if (r.status == RunStatus::Failed && !r.error.empty()) out << "             error: " << r.error << "\n";
      done += r.status == RunStatus::Done;
      failed += r.status == RunStatus::Failed;
    }
    out << fmt::format("{} runs: {} done, {} failed, {} other\n", runs.size(), done, failed,
                       runs.size() - done - failed);
  } else if (format == "csv") {
    out << "id,sweep_id,role,name,method,setting,seed,model,status,error,wall_seconds,images_per_second,params,macs,"
           "method_params,final_val_top1,final_test_top1,bestval_test_top1,checkpoint\n";
    for (const auto& r : runs) {
      auto f = store.finals(r.id);
      auto num = [&](const char* k) { return f.count(k) ? fmt::format("{}", f[k]) : std::string(); };
      out << csv_field(r.id) << ',' << csv_field(r.sweep_id) << ',' << to_string(r.role) << ',' << csv_field(r.name)
          << ',' << csv_field(r.method) << ',' << csv_field(r.setting) << ',' << r.seed << ',' << csv_field(r.model)
          << ',' << to_string(r.status) << ',' << csv_field(r.error) << ',' << r.wall_seconds << ','
          << r.images_per_second << ',' << r.params << ',' << r.macs << ',' << r.method_params << ','
          << num("final.val.top1") << ',' << num("final.test.top1") << ',' << num("bestval.test.top1") << ','
          << csv_field(r.checkpoint) << "\n";
    }
  } else {
    for (const auto& r : runs) {
      nlohmann::json j{{"id", r.id},
                       {"sweep_id", r.sweep_id},
                       {"role", to_string(r.role)},
                       {"name", r.name},
                       {"method", r.method},
                       {"reference", r.reference},
                       {"setting", nlohmann::json::parse(r.setting.empty() ? "{}" : r.setting)},
                       {"seed", r.seed},
                       {"model", r.model},
                       {"status", to_string(r.status)},
                       {"error", r.error.empty() ? nlohmann::json() : nlohmann::json::parse(r.error)},
                       {"wall_seconds", r.wall_seconds},
                       {"images_per_second", r.images_per_second},
                       {"params", r.params},
                       {"macs", r.macs},
                       {"method_params", r.method_params},
                       {"config", nlohmann::json::parse(r.config.empty() ? "{}" : r.config)},
                       {"environment", nlohmann::json::parse(r.environment.empty() ? "{}" : r.environment)},
                       {"finals", store.finals(r.id)},
                       {"checkpoint", r.checkpoint}};
      nlohmann::json ep = nlohmann::json::array();
      for (const auto& e : store.epochs(r.id))
        ep.push_back({{"stage", e.stage}, {"epoch", e.epoch}, {e.name, e.value}});
      j["epochs"] = ep;
      out << j.dump() << "\n";
    }
  }
  if (out_file.empty()) {
    std::cout << out.str();
  } else {
    write_text_atomically(out_file, out.str(), "export");
  }
  return 0;
}

}  // namespace kd

namespace kd::cli {
namespace {
struct RunsArgs {
  std::string dir, store, format = "table", out_file;
};
}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "runs", "List the runs in a sweep folder or store; export them as CSV or JSON Lines", 30,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::RunsArgs>();
      sub.add_option("dir", a->dir, "Sweep output folder, or a postgresql:// store URL (default: --store)");
      sub.add_option("--store", a->store, "Results store URL (postgresql://user@host:port/db; env KDBENCH_STORE)");
      sub.add_option("--format", a->format, "table | csv | jsonl")->check(CLI::IsMember({"table", "csv", "jsonl"}));
      sub.add_option("-o,--output", a->out_file, "Write to this file instead of stdout (atomically)");
      return [a] { return kd::cmd_runs(kd::cli::where_of(a->dir, a->store), a->format, a->out_file); };
    });
