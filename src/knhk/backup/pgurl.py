"""PostgreSQL URLs for backup work: the same server under another database name, host or port (multi-host
URLs included), and the URL with its password hidden for manifests and messages."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from knhk.errors import ConfigurationError


def url_with(url: str, **overrides: str | None) -> str:
    """``url`` with some connection parameters replaced (None removes one), as a ``postgresql://`` URL."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    for key, value in overrides.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    user = params.pop("user", None)
    password = params.pop("password", None)
    hosts = params.pop("host", "").split(",")
    ports = params.pop("port", "").split(",")
    dbname = params.pop("dbname", "")
    if len(ports) == 1 and len(hosts) > 1:
        ports = ports * len(hosts)
    netloc = ",".join(f"{quote(h, safe='')}:{p}" if p else quote(h, safe="")
                      for h, p in zip(hosts, ports + [""] * (len(hosts) - len(ports)), strict=False))
    if user:
        netloc = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@" + netloc
    query = f"?{urlencode(sorted(params.items()))}" if params else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"


def database_name(url: str) -> str:
    name = conninfo_to_dict(url).get("dbname")
    if not name:
        raise ConfigurationError("KNHK_DATABASE_URL names no database")
    return str(name)


def redact(url: str) -> str:
    """A URL or SQLite path safe to print and to store: no password."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    return url_with(url, password=None)
