"""Loopback by default, a warning beyond it, size limits on receiving sockets, and CURVE end to end.

The CURVE test runs a real pipeline with `security.curve=true` and keys from `run.py keys`: peers
holding an allowed client key push frames and receive labels; a peer whose key is not on the
allow-list, or that speaks no CURVE at all, can do neither.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.auth

from configs.settings import ConfigError, Endpoints, Security
from streamer.transport import wire
from streamer.transport.security import refused_count
from streamer.transport.sockets import is_loopback, make_socket
from tests.support.pipeline import ROOT, RUN_PY, Listener, Pipeline, free_port, is_label, is_stats


def test_every_default_endpoint_is_loopback():
    for field in dataclasses.fields(Endpoints):
        endpoint = getattr(Endpoints(), field.name)
        assert endpoint.startswith("tcp://127.0.0.1:") and is_loopback(endpoint), field.name


def test_binding_beyond_loopback_without_curve_warns_how_to_turn_it_on(caplog):
    context = zmq.Context()
    try:
        with caplog.at_level(logging.WARNING, logger="streamer.transport.sockets"):
            make_socket(context, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True, security=Security()).close()
            assert not caplog.records, "loopback needs no warning"
            make_socket(context, zmq.PULL, f"tcp://0.0.0.0:{free_port()}", bind=True, security=Security()).close()
        warning = caplog.records[-1].getMessage()
        assert caplog.records[-1].levelno == logging.WARNING
        assert "0.0.0.0" in warning and "WITHOUT authentication" in warning
        assert "security.curve=true" in warning and "run.py keys" in warning
    finally:
        context.destroy(linger=0)


def test_receiving_sockets_refuse_messages_above_the_size_limit():
    security = Security(max_message_bytes=123_456, max_label_message_bytes=7_890)
    context = zmq.Context()
    try:
        # Subscribers only ever receive small published messages: their own, smaller limit.
        for kind, bind, limit in ((zmq.PULL, True, 123_456), (zmq.SUB, False, 7_890), (zmq.PULL, False, 123_456)):
            socket = make_socket(context, kind, f"tcp://127.0.0.1:{free_port()}", bind=bind, security=security)
            assert socket.getsockopt(zmq.MAXMSGSIZE) == limit
            socket.close()
        # A socket that knows its messages (the LSTM worker's features socket) sets its own.
        features = make_socket(context, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True, security=security,
                               max_message_bytes=security.max_feature_message_bytes)
        assert features.getsockopt(zmq.MAXMSGSIZE) == 64 * 1024
        features.close()
        push = make_socket(context, zmq.PUSH, f"tcp://127.0.0.1:{free_port()}", bind=False, security=security)
        assert push.getsockopt(zmq.MAXMSGSIZE) == -1, "sending sockets need no limit"
        push.close()
    finally:
        context.destroy(linger=0)


def make_keys(keys_dir, *clients: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(RUN_PY), "keys", "--set", f"security.keys_dir={keys_dir}"]
    for name in clients:
        argv += ["--client", name]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_keys_makes_a_server_pair_client_pairs_and_an_allow_list(tmp_path):
    keys = tmp_path / "keys"
    result = make_keys(keys, "dashboard")
    assert result.returncode == 0, result.stderr
    for path in ("server.key", "server.key_secret", "clients/client.key", "clients/client.key_secret",
                 "clients/dashboard.key_secret", "allowed/client.key", "allowed/dashboard.key"):
        assert (keys / path).is_file(), path
    assert not list((keys / "allowed").glob("*secret*")), "the allow-list holds public keys only"
    for secret in keys.rglob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    allowed, _ = zmq.auth.load_certificate(keys / "allowed/dashboard.key")
    assert allowed == zmq.auth.load_certificate(keys / "clients/dashboard.key_secret")[0]
    before = (keys / "server.key_secret").read_bytes()
    again = make_keys(keys)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert (keys / "server.key_secret").read_bytes() == before, "existing keys are never replaced"


# --------------------------------------------------------------------------------- CURVE end to end


def frame(stream: str, seq: int) -> wire.Frame:
    return wire.Frame(stream=stream, seq=seq, t_capture=time.time(), session=1,
                      image=np.full((64, 64, 3), seq % 255, np.uint8))


def curve_peer(context: zmq.Context, kind: int, endpoint: str, keys_dir, secret_file) -> zmq.Socket:
    """A raw CURVE client with the given key pair (no IMMEDIATE: a refused peer queues, never blocks)."""
    socket = context.socket(kind)
    socket.linger = 0
    socket.curve_publickey, socket.curve_secretkey = zmq.auth.load_certificate(secret_file)
    socket.curve_serverkey, _ = zmq.auth.load_certificate(keys_dir / "server.key")
    socket.connect(endpoint)
    return socket


def test_curve_lets_in_allowed_keys_only(tmp_path):
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    zmq.auth.create_certificates(tmp_path, "intruder")  # a valid pair that is not on the allow-list
    intruder = tmp_path / "intruder.key_secret"
    allowed = Security(curve=True, keys_dir=str(keys))
    with Pipeline(tmp_path / "up", ["good=synthetic"], ["security.curve=true", f"security.keys_dir={keys}"]) \
            as pipeline, Listener(pipeline.endpoints["labels"], security=allowed) as listener:
        labels = pipeline.endpoints["labels"]
        context = zmq.Context()
        try:
            spy = curve_peer(context, zmq.SUB, labels, keys, intruder)
            plain = context.socket(zmq.SUB)
            plain.linger = 0
            plain.connect(labels)
            for sub in (spy, plain):
                sub.setsockopt(zmq.SUBSCRIBE, b"")
            listener.wait_for(is_label("good"), 120, "label through CURVE", since=0, pipeline=pipeline)
            # Every process (captures, workers, the supervisor) got in with the allowed client key.
            listener.wait_for(is_stats("supervisor"), 10, "supervisor stats through CURVE", since=0)

            friend = make_socket(context, zmq.DEALER, pipeline.endpoints["frames"], bind=False, security=allowed)
            rogue = curve_peer(context, zmq.DEALER, pipeline.endpoints["frames"], keys, intruder)
            rogue_features = curve_peer(context, zmq.PUSH, pipeline.endpoints["features"], keys, intruder)
            for seq in range(12):
                wire.send(friend, frame("friend", seq))
                # A refused peer has no connection to queue into once its handshake failed: never block on it.
                for peer, message in ((rogue, frame("rogue", seq)),
                                      (rogue_features, wire.Feature(stream="rogue2", seq=seq, t_capture=time.time(),
                                                                    session=1, vector=np.ones(512, np.float32)))):
                    try:
                        wire.send(peer, message, flags=zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                listener.pump(0.1)
            listener.wait_for(is_label("friend"), 20, "label of frames pushed with an allowed key", since=0)
            listener.pump(2.0)
            streams = {item.message.stream for item in listener.history if isinstance(item.message, wire.Label)}
            assert "rogue" not in streams and "rogue2" not in streams, "a refused key got data in"
            for name, sub in (("a refused key", spy), ("a peer without CURVE", plain)):
                assert not sub.poll(500), f"{name} received published data"
        finally:
            context.destroy(linger=0)
        pipeline.assert_running()
    assert "refused a CURVE client" in pipeline.log("features-0.log")
    assert "refused a CURVE client" in pipeline.log("lstm.log")


def test_a_server_socket_stops_its_authenticator_when_closed(tmp_path):
    """Workers close their sockets, then `context.term()`: that must not hang on the authenticator."""
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    security = Security(curve=True, keys_dir=str(keys))
    context = zmq.Context()
    first = make_socket(context, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True, security=security)
    second = make_socket(context, zmq.PUB, f"tcp://127.0.0.1:{free_port()}", bind=True, security=security)
    assert refused_count(context) == 0
    first.close()
    second.close()
    terminating = threading.Thread(target=context.term, daemon=True)
    terminating.start()
    terminating.join(5)
    assert not terminating.is_alive(), "context.term() hangs: the authenticator outlived its sockets"


@pytest.mark.parametrize("missing", ["server.key_secret", "clients/client.key_secret"])
def test_curve_without_its_keys_is_a_clear_error(tmp_path, missing):
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    (keys / missing).unlink()
    security = Security(curve=True, keys_dir=str(keys))
    context = zmq.Context()
    try:
        with pytest.raises(ConfigError) as error:
            server = missing.startswith("server")
            make_socket(context, zmq.PULL if server else zmq.PUSH, f"tcp://127.0.0.1:{free_port()}", bind=server,
                        security=security)
        assert str(keys / missing) in str(error.value) and "run.py keys" in str(error.value)
    finally:
        context.destroy(linger=0)


# ------------------------------------------------------------------------------------ key roles


def test_a_subscriber_key_can_subscribe_but_never_push_and_the_allow_lists_reload(tmp_path):
    keys = tmp_path / "keys"
    made = subprocess.run([sys.executable, str(RUN_PY), "keys", "--set", f"security.keys_dir={keys}",
                           "--subscriber", "dash"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (keys / "subscribers/dash.key").is_file() and not (keys / "allowed/dash.key").exists()
    security = Security(curve=True, keys_dir=str(keys))
    dash_secret, client_secret = keys / "clients/dash.key_secret", keys / "clients/client.key_secret"
    context = zmq.Context()
    try:
        pull_endpoint, pub_endpoint = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        pull = make_socket(context, zmq.PULL, pull_endpoint, bind=True, security=security)
        pub = make_socket(context, zmq.PUB, pub_endpoint, bind=True, security=security)

        def pushed_through(secret_file) -> bool:
            push = curve_peer(context, zmq.PUSH, pull_endpoint, keys, secret_file)
            try:
                push.send(b"x", flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # refused before it could queue
            arrived = bool(pull.poll(1500))
            if arrived:
                pull.recv()
            push.close()
            return arrived

        def subscribed_through(secret_file) -> bool:
            sub = curve_peer(context, zmq.SUB, pub_endpoint, keys, secret_file)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            deadline = time.monotonic() + 3
            try:
                while time.monotonic() < deadline:
                    pub.send(b"label")
                    if sub.poll(100):
                        return True
                return False
            finally:
                sub.close()

        assert pushed_through(client_secret) and subscribed_through(client_secret), "the pipeline's own key"
        assert subscribed_through(dash_secret), "a subscriber key subscribes"
        assert not pushed_through(dash_secret), "a subscriber key pushed data"
        refused = refused_count(context)
        assert refused >= 1
        (keys / "subscribers/dash.key").unlink()  # revoked while running: no restart needed
        assert not subscribed_through(dash_secret), "a revoked key still subscribes"
        (keys / "subscribers/broken.key").write_text("not a certificate")  # skipped while running, good keys stay
        assert subscribed_through(client_secret)
        assert refused_count(context) > refused
        pull.close()
        pub.close()
    finally:
        context.destroy(linger=0)


def test_an_unreadable_key_file_is_named_at_start_up(tmp_path):
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    (keys / "allowed/broken.key").write_text("not a certificate")
    context = zmq.Context()
    try:
        with pytest.raises(ConfigError) as error:
            make_socket(context, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True,
                        security=Security(curve=True, keys_dir=str(keys)))
        assert str(keys / "allowed/broken.key") in str(error.value)
    finally:
        context.destroy(linger=0)
