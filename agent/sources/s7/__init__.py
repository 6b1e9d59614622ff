"""Siemens S7 over ISO-on-TCP (python-snap7): the config model (``config``), absolute
addresses (``address``), planning over the shared range coalescing (``plan``), decoding
(``decode``), the poller (``poller``), ``read --raw`` (``raw``) and what the runtime uses
(``driver``)."""
