"""Modbus TCP, RTU, and RTU over TCP: the config model (``config``), request planning
(``plan``), decoding (``decode``), the untrusted wire (``wire``), the poller with its
connections (``poller``), ``read --raw`` (``raw``) and what the runtime uses (``driver``)."""
