// The one owner of a sweep folder's layout. Every path inside a sweep folder is built here:
//   <dir>/results.db         the results store (SQLite backend)
//   <dir>/sweep.json         the config as given
//   <dir>/checkpoints/<run id>.pt   each trained student (and <run id>.pt.method: its method's modules)
//   <dir>/report/            tables, figures and index.html
#pragma once
#include <string>

namespace kd {

class SweepLayout {
 public:
  explicit SweepLayout(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string store() const { return dir_ + "/results.db"; }
  std::string config_copy() const { return dir_ + "/sweep.json"; }
  std::string checkpoints() const { return dir_ + "/checkpoints"; }
  std::string checkpoint(const std::string& run_id) const { return checkpoints() + "/" + run_id + ".pt"; }
  std::string report() const { return dir_ + "/report"; }

 private:
  std::string dir_;
};

// The file beside a checkpoint that holds the method's own modules (regressors, embeddings, banks).
inline std::string method_checkpoint(const std::string& checkpoint) {
  return checkpoint + ".method";
}

}  // namespace kd
