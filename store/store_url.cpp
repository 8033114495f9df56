#include "store/store_url.h"

#include <libpq-fe.h>

#include <cctype>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "base/errors.h"
#include "store/store.h"

namespace kd {

namespace {

bool is_url(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

// Every keyword libpq knows (its connection defaults list them all).
const std::set<std::string>& libpq_keywords() {
  static const std::set<std::string> keywords = [] {
    std::set<std::string> k;
    if (PQconninfoOption* defaults = PQconndefaults()) {
      for (PQconninfoOption* o = defaults; o->keyword; ++o) k.insert(o->keyword);
      PQconninfoFree(defaults);
    }
    return k;
  }();
  return keywords;
}

// A key=value connection string: its first keyword is one libpq knows ("host=db ..."), so that a file path
// with '=' in it ("results/a=b.db") stays a path.
bool is_conninfo(const std::string& s) {
  const size_t eq = s.find('=');
  if (eq == std::string::npos) return false;
  std::string key = s.substr(0, eq);
  key.erase(0, key.find_first_not_of(" \t\n\r\f\v"));
  key.erase(key.find_last_not_of(" \t\n\r\f\v") + 1);
  return libpq_keywords().count(key) > 0;
}

// libpq's message without what it quotes (a part of the string it could not read may be a password).
std::string hide_quoted(std::string m) {
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    const size_t close = m[i] == '"' ? m.find('"', i + 1) : std::string::npos;
    if (close != std::string::npos && close > i + 2) {  // a quoted "=" or ":" stays
      out += "\"...\"";
      i = close;
    } else {
      out += m[i];
    }
  }
  return out;
}

struct Field {
  std::string keyword, value;
  bool secret;
};

// libpq's reading of `s`: the fields that have a value, in libpq's order; `error` when it cannot read it.
struct Reading {
  std::vector<Field> fields;
  std::string error;
};

Reading read_conninfo(const std::string& s) {
  Reading r;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(s.c_str(), &err);
  if (!opts) {
    r.error = err ? hide_quoted(err) : "libpq cannot read it (out of memory?)";
    if (err) PQfreemem(err);
    return r;
  }
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    const std::string keyword = o->keyword;
    // libpq marks its secrets with dispchar '*' (password, sslpassword); sslpassword is named too, whatever
    // the libpq version.
    const bool secret =
        (o->dispchar && std::strchr(o->dispchar, '*')) || keyword == "password" || keyword == "sslpassword";
    r.fields.push_back({keyword, o->val, secret});
  }
  PQconninfoFree(opts);
  for (const auto& f : r.fields)
    if (f.keyword == "host" && f.value.find('@') != std::string::npos)
      r.error =
          "its host holds '@' (not shown: libpq ends the user name and password at the first '@', so an '@' "
          "in a password is written %40)";
  return r;
}

std::string percent_encoded(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      o += static_cast<char>(c);
    } else {
      o += '%';
      o += hex[c >> 4];
      o += hex[c & 15];
    }
  }
  return o;
}

bool plain_host(const std::string& h) {
  if (h.empty()) return false;
  for (unsigned char c : h)
    if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_')) return false;
  return true;
}

bool digits(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!std::isdigit(c)) return false;
  return true;
}

// The fields as a URL with `scheme`: user@host:port/dbname in the authority and path where they are plain,
// everything else (and a list of hosts, a socket folder) as query parameters, percent-encoded.
std::string as_url(const std::string& scheme, const std::vector<Field>& fields) {
  std::string user, host, port, dbname;
  for (const auto& f : fields) {
    if (f.keyword == "user") user = f.value;
    if (f.keyword == "host") host = f.value;
    if (f.keyword == "port") port = f.value;
    if (f.keyword == "dbname") dbname = f.value;
  }
  const bool host_here = plain_host(host), port_here = host_here && digits(port);
  std::string u = scheme + "://";
  if (!user.empty()) u += percent_encoded(user) + "@";
  if (host_here) u += host;
  if (port_here) u += ":" + port;
  if (!dbname.empty()) u += "/" + percent_encoded(dbname);
  std::string query;
  for (const auto& f : fields) {
    if (f.keyword == "user" || f.keyword == "dbname" || (f.keyword == "host" && host_here) ||
        (f.keyword == "port" && port_here))
      continue;
    query += (query.empty() ? "?" : "&") + percent_encoded(f.keyword) + "=" + percent_encoded(f.value);
  }
  if (!query.empty() && dbname.empty()) u += "/";
  return u + query;
}

// The fields as a key=value string, values quoted where they need it.
std::string as_conninfo(const std::vector<Field>& fields) {
  std::string s;
  for (const auto& f : fields) {
    std::string v = f.value;
    if (v.empty() || v.find_first_of(" \t\n\r\f\v'\\") != std::string::npos) {
      std::string q = "'";
      for (char c : v) q += c == '\'' || c == '\\' ? std::string("\\") + c : std::string(1, c);
      v = q + "'";
    }
    s += (s.empty() ? "" : " ") + f.keyword + "=" + v;
  }
  return s;
}

}  // namespace

bool is_store_url(const std::string& location) {
  return is_url(location) || is_conninfo(location);
}

std::string redact_store_url(const std::string& location) {
  if (!is_store_url(location)) return location;
  const bool url = is_url(location);
  const std::string scheme = url ? location.substr(0, location.find("://")) : "";
  const Reading r = read_conninfo(location);
  if (!r.error.empty())
    return url ? scheme + "://(not shown: libpq cannot read this URL)"
               : "(a connection string libpq cannot read, not shown)";
  std::vector<Field> shown;
  for (const auto& f : r.fields)
    if (!f.secret) shown.push_back(f);
  return url ? as_url(scheme, shown) : as_conninfo(shown);
}

bool store_url_has_password(const std::string& location) {
  if (!is_store_url(location)) return false;
  for (const auto& f : read_conninfo(location).fields)
    if (f.secret) return true;
  return false;
}

std::string store_url_error(const std::string& location) {
  if (!is_store_url(location)) return "";
  return read_conninfo(location).error;
}

void refuse_password_in_store_url(const std::string& location, const std::string& key, const std::string& why) {
  if (!is_store_url(location)) return;
  const Reading r = read_conninfo(location);
  if (!r.error.empty()) throw ConfigError(key, "not a connection string libpq can read: " + r.error);
  for (const auto& f : r.fields)
    if (f.secret)
      throw ConfigError(key, "holds a password" + (f.keyword == "password" ? "" : " (" + f.keyword + ")") + ": " + why);
}

}  // namespace kd
