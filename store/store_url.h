// Store URLs as libpq itself reads them (PQconninfoParse): a postgresql:// or postgres:// URL, or a key=value
// connection string ("host=db dbname=kd user=kd"). What libpq reads as a secret -- the fields it marks secret
// (password, sslpassword), however the string spells them (a '?' or '@' in the userinfo, a percent-encoded key)
// -- is what kdbench never shows, logs, stores or writes into a job file. is_store_url and redact_store_url
// (store/store.h) are built on the same reading.
#pragma once
#include <string>

namespace kd {

// Whether libpq would read a password or another secret from `location` (false for a file path, and for a
// string libpq cannot read: see store_url_error).
bool store_url_has_password(const std::string& location);

// Why libpq cannot read `location` as a connection string ("" when it can, or when it is a file path), with
// nothing of the string in it (libpq quotes what it cannot read, which may be a password). A host that holds
// '@' is refused too: libpq ends the userinfo at the first '@', so the rest of a password with an unencoded '@'
// would be read, and shown, as the host.
std::string store_url_error(const std::string& location);

// Throws ConfigError(key, ...) when `location` is a store URL that libpq cannot read, or that holds a password
// (`why` says why no password may be there: "a command line is seen by every user of the machine"...). The
// message holds nothing of the URL.
void refuse_password_in_store_url(const std::string& location, const std::string& key, const std::string& why);

}  // namespace kd
