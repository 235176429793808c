"""A netcat for socket-level checks: World.sock_listen() and World.sock_connect() handles.

Bytes go through the World's sockets layer (core/sock): on a Cluster's hosts, the simulated
network with its latency, bandwidth and faults (strata.cluster.Network). Sending only queues
the bytes; they move as the simulation runs (cluster.run_until, world.advance, ...).

    srv = target.sock_listen(4420, echo=True)
    conn = initiator.sock_connect(target.address, 4420)
    cluster.run_until(lambda: conn.state == "established", timeout_ns=10**9)
    conn.send(b"ping")
    cluster.run_until(lambda: conn.info()["received"] >= 4, timeout_ns=10**9)
    assert conn.recv() == b"ping"
"""


class Connection:
    """One connection of a World's socket harness (connected, or accepted by a Listener)."""

    def __init__(self, world, id):
        self.world, self.id = world, id

    def send(self, data):
        """Queues bytes for sending (they go as the peer's window and the link allow)."""
        self.world._sock_send(self.id, bytes(data))

    def recv(self):
        """Every byte received and not yet taken (b"" when none)."""
        return self.world._sock_recv(self.id)

    def info(self):
        """{state, error, sent, received, unsent, unread, local, peer}."""
        return self.world._sock_info(self.id)

    @property
    def state(self):
        """"connecting", "established", "eof" (the peer closed), "closed" or "error"."""
        return self.info()["state"]

    @property
    def error(self):
        return self.info()["error"]

    def close(self):
        """Closes (FIN after the bytes already accepted)."""
        self.world._sock_close(self.id, False)

    def abort(self):
        """Abortive close: the peer sees "connection reset"."""
        self.world._sock_close(self.id, True)

    def __repr__(self):
        return "Connection(%s#%d, %s)" % (self.world.name, self.id, self.state)


class Listener:
    """A listening socket of a World's harness; .accepted() lists its connections."""

    def __init__(self, world, id):
        self.world, self.id = world, id

    def accepted(self):
        """The connections accepted so far (Connection objects, oldest first)."""
        return [Connection(self.world, i) for i in self.world._sock_accepted(self.id)]
