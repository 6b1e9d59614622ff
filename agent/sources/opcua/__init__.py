"""OPC UA (asyncua, the ``opcua`` extra): the config model (``config``), node ids
(``nodes``), the poller with its sessions and certificates (``poller``), ``browse``
(``browse``) and what the runtime uses (``driver``). Only ``config`` and ``nodes`` load
without asyncua, so ``check`` finds mistakes on any install."""
