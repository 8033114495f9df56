// Functions of the commands that other commands call (`kdbench sweep` writes the report at its end).
#pragma once
#include <string>

namespace kd {

// Lists the runs of the store in DIR as a table, CSV or JSON Lines (to stdout, or atomically to
// `out_file`). Returns the exit code.
int cmd_runs(const std::string& dir, const std::string& format, const std::string& out_file);

// Writes the report of the store in DIR to `out_dir` (default DIR/report). Returns the exit code.
int cmd_report(const std::string& dir, const std::string& out_dir);

// Path of the results store in a sweep folder; throws DataError naming DIR if there is none.
std::string store_path_in(const std::string& dir);

}  // namespace kd
