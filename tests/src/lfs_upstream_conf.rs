//! The files of the upstream's LFS server ([`crate::lfs_upstream`]): giftless's configuration,
//! the upstream's `git-lfs-authenticate`, nginx's LFS locations.

/// The `kid` of every token of a test's LFS server (giftless ignores tokens with another one).
pub(crate) const KEY_ID: &str = "mirrorfarm-test-lfs";

/// giftless's configuration. `AUTH_PROVIDERS: []`: the only authenticator is the JWT one (the
/// pre-authorized action provider, which giftless puts first), so a request without a valid
/// token has no identity (401) instead of falling through to an anonymous user.
/// `LEGACY_ENDPOINTS: false`: the transfer URLs it hands out are
/// `/<P>/<r>.git/info/lfs/objects/storage/<oid>` (the legacy ones, `/<P>/<r>/objects/…`, would
/// miss nginx's LFS locations). ProxyFix: those URLs say `https://127.0.0.1:<nginx port>`.
pub(crate) const GIFTLESS_YAML: &str = r##"LEGACY_ENDPOINTS: false
AUTH_PROVIDERS: []
PRE_AUTHORIZED_ACTION_PROVIDER:
  factory: giftless.auth.jwt:factory
  options:
    algorithm: HS256
    private_key: '@KEY@'
    key_id: '@KID@'
    default_lifetime: 300
TRANSFER_ADAPTERS:
  basic:
    factory: giftless.transfer.basic_streaming:factory
    options:
      storage_class: giftless.storage.local_storage:LocalStorage
      storage_options:
        path: '@STORAGE@'
      action_lifetime: 900
MIDDLEWARE:
  - class: werkzeug.middleware.proxy_fix:ProxyFix
    kwargs:
      x_proto: 1
      x_host: 1
"##;

/// Prints the token nginx puts on the batch requests it authorized itself (Basic + rules):
/// every permission on every repository, as nginx did the per-repository check.
pub(crate) const MINT_PROXY_TOKEN_PY: &str = r##"
import os, time, jwt
now = int(time.time())
claims = {"sub": "nginx", "iat": now, "nbf": now, "exp": now + 7 * 86400, "scopes": ["obj:*"]}
print(jwt.encode(claims, os.environ["LFS_KEY"], algorithm="HS256", headers={"kid": os.environ["LFS_KID"]}))
"##;

/// The `git-lfs-authenticate` of the upstream (run with the venv's python; PyJWT).
pub(crate) const AUTHENTICATE_PY: &str = r##"#!@PYTHON@
"""git-lfs-authenticate of the test upstream: prints the Git LFS server-discovery document
for <path> (P/r.git, /P/r.git, or any path ending in P/r.git) and <download|upload>, with a
token giftless accepts for that repository (read; read and write for upload)."""
import json
import sys
import time

import jwt

KEY = "@KEY@"
KID = "@KID@"
BASE = "@BASE@"
LIFETIME = 3600


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("download", "upload"):
        sys.stderr.write("usage: git-lfs-authenticate <path> <download|upload>\n")
        return 2
    parts = [p for p in sys.argv[1].strip("'\"").split("/") if p]
    if len(parts) < 2:
        sys.stderr.write("git-lfs-authenticate: expected <project>/<repo>.git\n")
        return 2
    project, repo = parts[-2], parts[-1]
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    actions = "read" if sys.argv[2] == "download" else "read,write"
    now = int(time.time())
    claims = {
        "sub": "git-lfs-authenticate",
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME,
        "scopes": ["obj:%s/%s/*:%s" % (project, repo, actions)],
    }
    token = jwt.encode(claims, KEY, algorithm="HS256", headers={"kid": KID})
    doc = {
        "href": "%s/%s/%s.git/info/lfs" % (BASE, project, repo),
        "header": {"Authorization": "Bearer " + token},
        "expires_in": LIFETIME,
    }
    print(json.dumps(doc))
    return 0


sys.exit(main())
"##;

/// nginx, `http` level: a Bearer request skips Basic auth (`auth_basic off` through the
/// variable) and keeps its token; any other request reaching giftless passed Basic + rules and
/// gets nginx's token. `$lfs_path`: the request's path for the rule check (subrequest).
pub(crate) const NGINX_HTTP: &str = r##"  map $http_authorization $lfs_realm {
    default "upstream";
    "~*^bearer " off;
  }
  map $http_authorization $lfs_authorization {
    default "Bearer @PROXY_TOKEN@";
    "~*^bearer " $http_authorization;
  }
  map $request_uri $lfs_path {
    default $request_uri;
    "~^(?<lfs_p>[^?]*)\?" $lfs_p;
  }
"##;

/// nginx, `server` level: the LFS locations (the git one is `location /`).
pub(crate) const NGINX_SERVER: &str = r##"    location ~ ^/.+\.git/info/lfs/objects/storage/ {
      auth_basic off;
      client_max_body_size 0;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_pass http://127.0.0.1:@LFS_PORT@;
    }
    location ~ ^/.+\.git/info/lfs/ {
      auth_basic $lfs_realm;
      auth_basic_user_file @HTPASSWD@;
      auth_request /_lfs_rules;
      client_max_body_size 0;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header Authorization $lfs_authorization;
      proxy_pass http://127.0.0.1:@LFS_PORT@;
    }
    location = /_lfs_rules {
      internal;
      fastcgi_pass_request_body off;
      include /etc/nginx/fastcgi_params;
      fastcgi_param CONTENT_LENGTH "";
      fastcgi_param SCRIPT_FILENAME @RULES@;
      fastcgi_param PATH_INFO $lfs_path;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param LFS_CHECK 1;
      fastcgi_pass unix:@SOCK@;
    }
"##;
