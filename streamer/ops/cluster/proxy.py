"""The one label endpoint of a cluster: a ZeroMQ XSUB/XPUB proxy in a Ray actor on the head node.

Every cell publishes into `cluster.labels_in` (XSUB); dashboards, `subscribe` and `bench` connect
to `endpoints.labels` (XPUB) as they do on one host. Subscriptions travel upstream, so a cell
sends only the topics somebody wants; topics and messages pass through unchanged.
"""

from __future__ import annotations

import logging
import threading

import ray
import zmq

from configs.settings import build_config
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import make_socket

log = logging.getLogger("proxy")

PROXY = "label-proxy"  # its actor name in the cluster's namespace
WILDCARD_HOSTS = ("0.0.0.0", "*")


def connect_address(bound: str, node_ip: str) -> str:
    """Where a peer on another node reaches an endpoint bound as `bound` on the node `node_ip`."""
    scheme, _, rest = bound.partition("://")
    host, _, port = rest.rpartition(":")
    return f"{scheme}://{node_ip}:{port}" if host in WILDCARD_HOSTS else bound


class LabelProxy:
    def __init__(self, values: dict):
        setup_logging("proxy")
        config = build_config(values)
        self.labels_in = config.cluster.labels_in
        self.context = zmq.Context()
        self.inbound = make_socket(self.context, zmq.XSUB, config.cluster.labels_in, bind=True,
                                   security=config.security, hwm=100000, setting="cluster.labels_in")
        self.outbound = make_socket(self.context, zmq.XPUB, config.endpoints.labels, bind=True,
                                    security=config.security, hwm=100000, setting="endpoints.labels")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        log.info("label proxy: cells publish into %s, subscribers connect to %s", config.cluster.labels_in,
                 config.endpoints.labels)

    def _run(self) -> None:
        try:
            zmq.proxy(self.inbound, self.outbound)
        except zmq.ContextTerminated:
            pass
        finally:
            self.inbound.close(linger=0)
            self.outbound.close(linger=0)

    def ready(self) -> str:
        """The address cells connect to: `cluster.labels_in`, with this node's IP for a wildcard host."""
        if not self.thread.is_alive():
            raise RuntimeError("the label proxy's thread has ended")
        return connect_address(self.labels_in, ray.util.get_node_ip_address())

    def stop(self) -> None:
        self.context.term()  # ends zmq.proxy, whose thread closes the sockets
        self.thread.join(5)
