"""Exceptions shared by the in-process World and the socket Client."""

# JSON-RPC 2.0 reserved codes (https://www.jsonrpc.org/specification#error_object).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RpcError(Exception):
    """A JSON-RPC error response.

    Attributes:
        code: the JSON-RPC error code (int), e.g. -32602 for invalid params.
        message: the server's sentence ("unknown parameter 'foo'").
        data: the error's optional "data" member (any JSON value) or None.
        method: the method that was called (None when unknown, e.g. a parse error).
    """

    def __init__(self, code, message, data=None, method=None):
        self.code = int(code) if isinstance(code, (int, float)) else code
        self.message = str(message)
        self.data = data
        self.method = method
        super().__init__(self.__str__())

    @classmethod
    def from_error_object(cls, err, method=None):
        """Builds an RpcError from a response's "error" member (tolerates malformed ones)."""
        if not isinstance(err, dict):
            return cls(INTERNAL_ERROR, "malformed error object: %r" % (err,), method=method)
        return cls(err.get("code", INTERNAL_ERROR), err.get("message", ""), err.get("data"),
                   method)

    def __str__(self):
        where = "%s: " % self.method if self.method else ""
        return "%serror %s: %s" % (where, self.code, self.message)

    def __repr__(self):
        return "RpcError(code=%r, message=%r, data=%r, method=%r)" % (
            self.code, self.message, self.data, self.method)

    def __reduce__(self):  # picklable (pytest-xdist, multiprocessing)
        return (RpcError, (self.code, self.message, self.data, self.method))


class RpcConnectionError(ConnectionError):
    """The Client could not reach the daemon, or the connection broke mid-call."""


class RpcTimeout(TimeoutError):
    """No complete response arrived within the Client's timeout."""


class ProtocolError(Exception):
    """The daemon sent something that is not a valid JSON-RPC 2.0 response."""
