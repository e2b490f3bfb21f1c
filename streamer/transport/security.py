"""ZeroMQ CURVE: encryption and authentication for every TCP socket, and `run.py keys`.

With `security.curve = true`, every socket `make_socket` builds is a CURVE socket:
- the binding side of each link (feature worker frames ROUTER or PULL, LSTM features PULL and labels PUB) is
  the CURVE *server*: it holds `server.key_secret`, and a ZAP authenticator in its process lets in
  only clients whose public key is in `allowed/`;
- every connecting side (captures, feature workers' PUSH, the supervisor, dashboards) is a CURVE
  *client*: it holds its own pair `clients/<security.client_key>.key_secret` and `server.key`.

Key folder (`security.keys_dir`), made by `python run.py keys`:
    server.key, server.key_secret         the servers' pair (stays on the machines that bind)
    clients/NAME.key, NAME.key_secret     one pair per client ("client" for this host's processes)
    allowed/NAME.key                      the pipeline's own keys: may push frames and features, and subscribe
    subscribers/NAME.key                  dashboards' keys: may subscribe to labels, never push
Roles are checked per socket: the receiving sockets (frames, features) ask the ZAP domain "push", the
labels PUB socket asks "subscribe". To let in a dashboard on another machine:
`run.py keys --subscriber bob`, copy `server.key` and `clients/bob.key_secret` there, run it with
`--set security.client_key=bob`. To revoke a key, delete its file: the allow-lists are read again
when their folders change, without a restart. A key file that cannot be read is named at start-up.

ZeroMQ asks a ZAP handler inside the same context for every CURVE handshake, so each process
that binds runs one authenticator thread per context: started with the first server socket and
stopped when the last one closes (the workers' `context.term()` would otherwise wait forever on
the authenticator's own sockets).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from configs.settings import ConfigError, Security, add_config_arguments, from_args

log = logging.getLogger(__name__)

SERVER = "server"
CLIENTS = "clients"
ALLOWED = "allowed"
SUBSCRIBERS = "subscribers"
PUSH_DOMAIN = "push"  # ZAP domain of the PULL sockets: keys in allowed/
SUBSCRIBE_DOMAIN = "subscribe"  # ZAP domain of the PUB socket: keys in allowed/ and subscribers/


def server_secret_file(security: Security) -> Path:
    return Path(security.keys_dir) / f"{SERVER}.key_secret"


def server_public_file(security: Security) -> Path:
    return Path(security.keys_dir) / f"{SERVER}.key"


def client_secret_file(security: Security) -> Path:
    return Path(security.keys_dir) / CLIENTS / f"{security.client_key}.key_secret"


def allowed_dir(security: Security) -> Path:
    return Path(security.keys_dir) / ALLOWED


def subscribers_dir(security: Security) -> Path:
    return Path(security.keys_dir) / SUBSCRIBERS


def apply_curve(socket: zmq.Socket, security: Security, server: bool) -> None:
    """Make `socket` a CURVE server (with the authenticator running) or a CURVE client."""
    if not zmq.has("curve"):
        raise ConfigError("security.curve=true but this libzmq was built without CURVE support")
    if server:
        public, secret = _load_pair(server_secret_file(security), security)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True
        publishing = socket.type in (zmq.PUB, zmq.XPUB)
        socket.zap_domain = (SUBSCRIBE_DOMAIN if publishing else PUSH_DOMAIN).encode()
        if isinstance(socket, ServerSocket):
            socket.hold_authenticator(security)
        else:  # a socket made elsewhere: authenticate for as long as its context lives
            _acquire_authenticator(socket.context, security)
    else:
        public, secret = _load_pair(client_secret_file(security), security)
        server_public, _ = _load_file(server_public_file(security), security)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_serverkey = server_public


def check_keys(security: Security) -> None:
    """Raise ConfigError naming what is missing when CURVE is on but the keys are not in place."""
    _load_pair(server_secret_file(security), security)
    folder = allowed_dir(security)
    if not folder.is_dir() or not any(folder.glob("*.key")):
        raise ConfigError(f"CURVE is on but the allow-list {folder} holds no client keys, so no client could "
                          f"connect; {_make_keys_hint(security)}")
    read_allow_list(folder, security, strict=True)
    read_allow_list(subscribers_dir(security), security, strict=True)
    _load_pair(client_secret_file(security), security)
    _load_file(server_public_file(security), security)


class ServerSocket(zmq.Socket):
    """A socket that keeps its context's authenticator running until it is closed."""

    _auth_security: Security | None = None

    def hold_authenticator(self, security: Security) -> None:
        if self._auth_security is None:
            _acquire_authenticator(self.context, security)
            self._auth_security = security

    def close(self, linger: int | None = None) -> None:
        context, held = self.context, self._auth_security
        self._auth_security = None
        super().close(linger=linger)
        if held is not None:
            _release_authenticator(context)


def read_allow_list(folder: Path, security: Security, strict: bool) -> set[bytes]:
    """The Z85 public keys in `folder`/*.key (none when it does not exist).

    Each file is read on its own: one bad file is named (strict: a ConfigError; else a warning and
    the file skipped), never a reason to refuse every good key."""
    keys: set[bytes] = set()
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else []:
        try:
            public, _ = zmq.auth.load_certificate(path)
        except (ValueError, OSError) as error:
            message = f"CURVE key file {path} cannot be read ({error}); replace it or delete it"
            if strict:
                raise ConfigError(f"{message}; {_make_keys_hint(security)}") from None
            log.warning("%s: skipped", message)
            continue
        if public:
            keys.add(public)
    return keys


class RoleCheck:
    """pyzmq's public credentials callback: which key may do what, re-read when a folder changes."""

    def __init__(self, security: Security):
        self.security = security
        self.refused = 0
        self._seen: tuple = ()
        self._pushers: set[bytes] = set()
        self._subscribers: set[bytes] = set()
        self._reload(strict=True)

    def _stamp(self) -> tuple:
        stamps = []
        for folder in (allowed_dir(self.security), subscribers_dir(self.security)):
            try:
                stamps.append((folder.stat().st_mtime_ns, *(p.stat().st_mtime_ns for p in folder.glob("*.key"))))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _reload(self, strict: bool = False) -> None:
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._pushers = read_allow_list(allowed_dir(self.security), self.security, strict)
        self._subscribers = read_allow_list(subscribers_dir(self.security), self.security, strict)
        self._seen = stamp

    def callback(self, domain: str, key: bytes) -> bool:
        self._reload()
        allowed = key in self._pushers or (domain == SUBSCRIBE_DOMAIN and key in self._subscribers)
        if not allowed:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                role = "subscribe" if domain == SUBSCRIBE_DOMAIN else "push data"
                log.warning("refused a CURVE client that may not %s (%d refused so far): its public key is not in "
                            "the allow-list folder for that role", role, self.refused)
        return allowed


_lock = threading.Lock()
_running: dict[int, tuple[ThreadAuthenticator, RoleCheck, int]] = {}  # id(context) -> (authenticator, check, sockets)


def _acquire_authenticator(context: zmq.Context, security: Security) -> None:
    folder = allowed_dir(security)
    with _lock:
        entry = _running.get(id(context))
        if entry is None:
            if not folder.is_dir():
                raise ConfigError(f"CURVE allow-list folder {folder} does not exist; {_make_keys_hint(security)}")
            check = RoleCheck(security)  # raises naming a bad key file, before anything listens
            authenticator = ThreadAuthenticator(context, log=logging.getLogger("zmq.auth"))
            authenticator.start()
            for domain in (PUSH_DOMAIN, SUBSCRIBE_DOMAIN):
                authenticator.configure_curve_callback(domain=domain, credentials_provider=check)
            entry = (authenticator, check, 0)
        _running[id(context)] = (entry[0], entry[1], entry[2] + 1)


def _release_authenticator(context: zmq.Context) -> None:
    with _lock:
        authenticator, check, count = _running.get(id(context), (None, None, 0))
        if authenticator is None:
            return
        if count > 1:
            _running[id(context)] = (authenticator, check, count - 1)
            return
        del _running[id(context)]
    authenticator.stop()


def refused_count(context: zmq.Context) -> int:
    """How many clients this context's authenticator has refused (0 when none runs)."""
    entry = _running.get(id(context))
    return entry[1].refused if entry else 0


def _load_pair(path: Path, security: Security) -> tuple[bytes, bytes]:
    public, secret = _load_file(path, security)
    if secret is None:
        raise ConfigError(f"{path} holds no secret key; {_make_keys_hint(security)}")
    return public, secret


def _load_file(path: Path, security: Security) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"CURVE is on (security.curve=true) but {path} does not exist; {_make_keys_hint(security)}")
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as error:
        raise ConfigError(f"{path} is not a ZeroMQ certificate ({error}); {_make_keys_hint(security)}") from None


def _make_keys_hint(security: Security) -> str:
    """The `keys` command that makes exactly the files this process looks for."""
    return (f"make them with: python run.py keys --set security.keys_dir={security.keys_dir} "
            f"--set security.client_key={security.client_key} (this process uses that client pair)")


# ------------------------------------------------------------------------------- run.py keys


def make_keys(security: Security, clients: list[str], subscribers: tuple[str, ...] = ()) -> list[str]:
    """Create whatever pairs are missing; existing ones are kept. Returns what was made.

    `clients` may push and subscribe (their public keys go to allowed/); `subscribers` may only
    subscribe (subscribers/)."""
    root = Path(security.keys_dir)
    made = []
    for folder in (root, root / CLIENTS, root / ALLOWED, root / SUBSCRIBERS):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    if not server_secret_file(security).exists():
        _create_pair(root, SERVER)
        made.append(str(server_secret_file(security)))
    for names, listing in ((clients, ALLOWED), (subscribers, SUBSCRIBERS)):
        for name in names:
            secret = root / CLIENTS / f"{name}.key_secret"
            if not secret.exists():
                _create_pair(root / CLIENTS, name)
                made.append(str(secret))
            listed = root / listing / f"{name}.key"
            if not listed.exists():
                listed.write_bytes((root / CLIENTS / f"{name}.key").read_bytes())
                made.append(str(listed))
    return made


def _create_pair(folder: Path, name: str) -> None:
    public_file, secret_file = zmq.auth.create_certificates(folder, name)
    os.chmod(secret_file, 0o600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also make a client pair NAME and allow it to push and subscribe (repeatable); "
                             "the pair named by security.client_key is always made")
    parser.add_argument("--subscriber", action="append", default=[], metavar="NAME",
                        help="also make a pair NAME that may only subscribe (a dashboard; repeatable)")


def main(args: argparse.Namespace) -> int:
    security = from_args(args).security  # a ConfigError is reported by run.py
    clients = [security.client_key] + [name for name in args.client if name != security.client_key]
    subscribers = tuple(name for name in args.subscriber if name not in clients)
    bad = [name for name in clients + list(subscribers) if not name or "/" in name or name.startswith(".")]
    if bad:
        raise ConfigError(f"key names must be plain file names (no '/', not starting with '.'), got {bad}")
    made = make_keys(security, clients, subscribers)
    root = Path(security.keys_dir)
    print(f"keys in {root}: " + (f"made {len(made)} file(s)" if made else "all present, nothing changed"))
    for path in made:
        print(f"  {path}")
    print(f"servers (the processes that bind) use {server_secret_file(security)} and allow {allowed_dir(security)}/*.key "
          f"(push and subscribe) and {subscribers_dir(security)}/*.key (subscribe only)")
    print(f"clients use {root / CLIENTS}/NAME.key_secret and {server_public_file(security)}")
    print("turn it on with --set security.curve=true (or curve = true under [security] in the config file)")
    return 0
