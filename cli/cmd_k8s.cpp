// `kdbench k8s CONFIG --workers N --image IMAGE`: writes a Kubernetes Indexed Job manifest whose pods are
// workers of one sweep on one PostgreSQL store (each knows its index from JOB_COMPLETION_INDEX), with the
// config in a ConfigMap and the output and teacher cache on a shared volume (a PersistentVolumeClaim).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include "base/errors.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "harness/plan.h"

namespace fs = std::filesystem;

namespace kd::cli {
namespace {

struct K8sArgs {
  std::string config, store, image, pvc = "kdbench-shared", secret = "kdbench-postgres", output, cpu, memory;
  int workers = 0, gpus = 0;
};

// The sweep's name (of a safe set: harness/plan.cpp) as a name Kubernetes accepts (lower case, digits, '-').
std::string k8s_name(const std::string& s) {
  std::string o;
  for (char c : s) o += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
  return o;
}

// A name given for a Kubernetes object (a PersistentVolumeClaim, a Secret): an RFC 1123 label, lower-case letters,
// digits and '-', starting and ending with a letter or digit, at most 63 characters.
void check_k8s_name(const std::string& s, const std::string& key) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  const bool ok = !s.empty() && s.size() <= 63 && alnum(s.front()) && alnum(s.back()) &&
                  std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
  if (!ok)
    throw ConfigError(key,
                      "must be a Kubernetes name: 1 to 63 lower-case letters, digits or '-', starting and ending "
                      "with a letter or digit");
}

// `s` as a YAML double-quoted scalar: JSON's string syntax, every non-ASCII character escaped (YAML 1.1 parsers,
// kubectl's among them, read U+0085, U+2028 and U+2029 as line breaks). ConfigError naming `key` for text that
// is not UTF-8.
std::string yaml_quoted(const std::string& s, const std::string& key) {
  try {
    return json(s).dump(-1, ' ', /*ensure_ascii=*/true);
  } catch (const json::exception&) {
    throw ConfigError(key, "is not valid UTF-8");
  }
}

// The manifest. Every value is a quoted scalar (yaml_quoted), a checked name, a number, or the config's JSON (all
// ASCII) in a block scalar; the comments hold only checked names.
std::string manifest(const K8sArgs& a, const SweepConfig& cfg, const std::string& url) {
  check_k8s_name(a.pvc, "--pvc");
  check_k8s_name(a.secret, "--secret");
  const std::string name = "kdbench-" + k8s_name(cfg.name);
  // Inside the pods: the config from the ConfigMap, output and teacher cache on the shared volume.
  json config = cfg.raw;
  config["cache_dir"] = "/shared/cache";
  std::ostringstream indented;
  std::istringstream lines(config.dump(2, ' ', /*ensure_ascii=*/true));
  for (std::string line; std::getline(lines, line);) indented << "    " << line << "\n";
  const std::string q_url = yaml_quoted(url, "--store");
  std::string m;
  m += fmt::format("# {} kdbench workers of sweep '{}' on one PostgreSQL store, written by `kdbench k8s`.\n", a.workers,
                   cfg.name);
  m += "# Apply: kubectl apply -f THIS_FILE   Watch: kubectl get pods -l job-name=" + name + "\n";
  m += "# Needs: the PersistentVolumeClaim '" + a.pvc + "' (ReadWriteMany: output and teacher cache) and the\n";
  m += "# Secret '" + a.secret + "' with key 'password' (the store's password; never in this file).\n";
  m += "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "-config\ndata:\n  sweep.json: |\n";
  m += indented.str();
  m += "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: " + name + "\nspec:\n";
  m += "  completionMode: Indexed\n";
  m += fmt::format("  completions: {}\n  parallelism: {}\n  backoffLimit: {}\n", a.workers, a.workers, 3 * a.workers);
  m += "  template:\n    spec:\n      restartPolicy: OnFailure\n      containers:\n      - name: worker\n";
  m += "        image: " + yaml_quoted(a.image, "--image") + "\n";
  m += "        command: [\"kdbench\", \"sweep\", \"/config/sweep.json\", \"--output\", " +
       yaml_quoted("/shared/" + (a.output.empty() ? "results/" + cfg.name : a.output), "--output") + "]\n";
  m += "        env:\n";
  m += "        - name: KDBENCH_STORE\n          value: " + q_url + "\n";
  m += "        - name: PGPASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: " + a.secret +
       "\n              key: password\n";
  if (a.gpus > 0 || !a.cpu.empty() || !a.memory.empty()) {
    m += "        resources:\n          limits:\n";
    if (a.gpus > 0) m += fmt::format("            nvidia.com/gpu: {}\n", a.gpus);
    if (!a.cpu.empty()) m += "            cpu: " + yaml_quoted(a.cpu, "--cpu") + "\n";
    if (!a.memory.empty()) m += "            memory: " + yaml_quoted(a.memory, "--memory") + "\n";
  }
  m += "        volumeMounts:\n        - name: shared\n          mountPath: /shared\n";
  m += "        - name: config\n          mountPath: /config\n";
  m += "      volumes:\n      - name: shared\n        persistentVolumeClaim:\n          claimName: " + a.pvc + "\n";
  m += "      - name: config\n        configMap:\n          name: " + name + "-config\n";
  return m;
}

int cmd_k8s(const K8sArgs& a) {
  SweepConfig cfg = load_sweep_config(a.config);
  const std::string text = manifest(a, cfg, worker_store_url(cfg, a.store));
  std::cout << text;
  return 0;
}

}  // namespace
}  // namespace kd::cli

KD_REGISTER_COMMAND(
    "k8s", "Write a Kubernetes Indexed Job manifest of sweep workers on one PostgreSQL store (to stdout)", 46,
    [](CLI::App& sub) -> kd::cli::CommandRun {
      auto a = std::make_shared<kd::cli::K8sArgs>();
      sub.add_option("config", a->config, "Sweep config (JSON)")->required();
      sub.add_option("--workers", a->workers, "Pods (workers)")->required()->check(CLI::Range(1, 100000));
      sub.add_option("--image", a->image, "Container image with kdbench on its PATH")->required();
      sub.add_option("--store", a->store, "postgresql://user@host:port/db (no password; env KDBENCH_STORE)");
      sub.add_option("--pvc", a->pvc, "PersistentVolumeClaim mounted at /shared (output, teacher cache)");
      sub.add_option("--secret", a->secret, "Secret whose key 'password' is the store's password");
      sub.add_option("--gpus", a->gpus, "GPUs per pod (nvidia.com/gpu)");
      sub.add_option("--cpu", a->cpu, "CPU limit per pod, e.g. 8");
      sub.add_option("--memory", a->memory, "Memory limit per pod, e.g. 32Gi");
      sub.add_option("-o,--output", a->output, "Output folder under /shared (default results/NAME)");
      return [a] { return kd::cli::cmd_k8s(*a); };
    });
