// Functions of the commands that other commands call (`kdbench sweep` writes the report at its end).
#pragma once
#include <string>

namespace kd {

// Lists the runs of a store (a sweep folder DIR, or a postgresql:// URL) as a table, CSV or JSON Lines (to
// stdout, or atomically to `out_file`). Returns the exit code.
int cmd_runs(const std::string& where, const std::string& format, const std::string& out_file);

// Writes the report of a store (a sweep folder DIR, or a postgresql:// URL) to `out_dir` (default
// DIR/report; required for a URL). Returns the exit code.
int cmd_report(const std::string& where, const std::string& out_dir);

// The results store a command reads: a postgresql:// URL as given, or DIR/results.db (DataError naming DIR
// if there is none).
std::string store_location_of(const std::string& where);

// The store given by --store, else the environment's KDBENCH_STORE, else "". A password in --store is refused
// (ConfigError naming --store): see refuse_password_on_command_line.
std::string store_from_environment(const std::string& flag);

// Throws ConfigError(key) when `location`, given on the command line, is a store URL with a password (a command
// line shows in `ps` and in shell histories) or one libpq cannot read.
void refuse_password_on_command_line(const std::string& location, const std::string& key);

struct SweepConfig;
// The PostgreSQL store that workers of a job share (--store, KDBENCH_STORE or the config's "store"); throws
// ConfigError when there is none or when it holds a password (a job file is not the place for one).
std::string worker_store_url(const SweepConfig& cfg, const std::string& flag);

// `s` in single quotes for a POSIX shell.
std::string shell_quote(const std::string& s);

}  // namespace kd
