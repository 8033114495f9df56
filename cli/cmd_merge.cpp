// `kdbench merge OUT SHARD_DIR...`: combines the stores of a sweep's static shards (`kdbench sweep --shard
// i/n`) into one SQLite store OUT/results.db (or a postgresql:// store), with the students' checkpoints copied
// into OUT/checkpoints. A run finished in several shards (a teacher each shard needed) is taken once, from the
// first shard that finished it; a finished run already in OUT is never replaced.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "store/store.h"
#include "store/sweep_layout.h"

namespace fs = std::filesystem;

namespace kd::cli {
namespace {

struct MergeArgs {
  std::string out;
  std::vector<std::string> shards;
};

// Whether `id` has the form of the run ids kdbench makes (content_hash: 32 lower-case hexadecimal digits). Ids
// become file names, so a shard's store holding anything else ("../../x") is refused.
bool is_run_id(const std::string& id) {
  return id.size() == 32 &&
         std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// `id` for a message: control characters as '?'.
std::string printable(std::string id) {
  for (auto& c : id)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return id;
}

// Whether `path` lies inside folder `dir` (both made canonical; the folder's name ends with a separator, so
// "dir/checkpoints-other" is not inside "dir/checkpoints").
bool lies_inside(const std::string& path, const std::string& dir) {
  const std::string base = fs::weakly_canonical(dir).string() + "/";
  return fs::weakly_canonical(path).string().rfind(base, 0) == 0;
}

// Copies a checkpoint of a shard (and its method file) into OUT's checkpoints; returns the new path.
std::string copy_checkpoint(const std::string& from, const SweepLayout& out, const std::string& run_id) {
  const std::string to = out.checkpoint(run_id);
  if (!lies_inside(to, out.checkpoints()))
    throw DataError(
        to, "would lie outside " + out.checkpoints() + "; nothing of run '" + printable(run_id) + "' was copied");
  for (const auto& [src, dst] : {std::pair{from, to}, std::pair{method_checkpoint(from), method_checkpoint(to)}}) {
    if (!fs::exists(src)) continue;
    write_atomically(
        dst, [&](const std::string& tmp) { fs::copy_file(src, tmp, fs::copy_options::overwrite_existing); },
        "checkpoint");
  }
  return to;
}

int cmd_merge(const MergeArgs& a) {
  refuse_password_on_command_line(a.out, "out");
  for (const auto& dir : a.shards) refuse_password_on_command_line(dir, "shards");
  // Every run id of every shard first: nothing is merged from stores that hold ids kdbench does not make.
  for (const auto& dir : a.shards) {
    auto shard = open_store(store_location_of(dir), /*read_only=*/true);
    for (const auto& r : shard->runs())
      if (!is_run_id(r.id))
        throw DataError(shard->path(), "run id '" + printable(r.id) +
                                           "' is not one kdbench makes (32 lower-case hexadecimal digits); nothing "
                                           "was merged");
  }
  const bool to_url = is_store_url(a.out);
  const SweepLayout out(to_url ? std::string() : a.out);
  if (!to_url) fs::create_directories(out.checkpoints());
  auto target = open_store(to_url ? a.out : out.store());
  int imported = 0, duplicates = 0, unfinished = 0;
  std::set<std::string> taken;
  // Finished runs first (from every shard), then what no shard finished.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& dir : a.shards) {
      auto shard = open_store(store_location_of(dir), /*read_only=*/true);
      if (pass == 0) {
        for (const auto& s : shard->sweeps()) target->put_sweep(s.id, s.name, s.config, s.environment);
        if (!to_url && !fs::exists(out.config_copy()) && fs::exists(SweepLayout(dir).config_copy()))
          fs::copy_file(SweepLayout(dir).config_copy(), out.config_copy());
      }
      for (RunRecord r : shard->runs()) {
        const bool done = r.status == RunStatus::Done;
        if ((pass == 0) != done) continue;
        if (taken.count(r.id)) {
          duplicates += done;
          continue;
        }
        if (auto existing = target->run(r.id); existing && existing->status == RunStatus::Done) {
          taken.insert(r.id);
          continue;
        }
        // A student's checkpoint lives in its shard's folder: bring it along. Teachers' stay in the shared cache.
        if (done && !to_url && !r.checkpoint.empty() && lies_inside(r.checkpoint, SweepLayout(dir).checkpoints()))
          r.checkpoint = copy_checkpoint(r.checkpoint, out, r.id);
        target->import_run(r, shard->epochs(r.id), shard->finals(r.id));
        taken.insert(r.id);
        imported += done;
        unfinished += !done;
      }
    }
  }
  log::info("merged {} shard(s) into {}: {} finished runs, {} not finished, {} finished more than once (taken once)",
            a.shards.size(), target->path(), imported, unfinished, duplicates);
  return 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "merge", "Combine the stores of a sweep's shards (sweep --shard i/n) into one store", 42,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::MergeArgs>();
      sub.add_option("out", a->out, "Folder for the merged results.db (or a postgresql:// URL)")->required();
      sub.add_option("shards", a->shards, "The shards' output folders")->required();
      return [a] { return kd::cli::cmd_merge(*a); };
    });
