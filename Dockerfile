# ixon-agent in a container:
#   docker build -t ixon-agent .
#   docker run -d --name ixon-agent --restart on-failure \
#     -v /etc/ixon-agent/agent.toml:/etc/ixon-agent/agent.toml:ro \
#     -v ixon-agent-state:/var/lib/ixon-agent -p 127.0.0.1:9108:9108 ixon-agent
# Modbus RTU: pass the serial port in, with the group that may open it:
#     --device /dev/ttyUSB0 --group-add dialout
# `docker kill -s HUP ixon-agent` reloads the config.
FROM python:3.11-slim

RUN useradd --system --create-home --home-dir /var/lib/ixon-agent --shell /usr/sbin/nologin ixon-agent
WORKDIR /opt/ixon-agent
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY simulators ./simulators
COPY workbench ./workbench
RUN pip install --no-cache-dir . && rm -rf /root/.cache

ENV AGENT_CONFIG=/etc/ixon-agent/agent.toml \
    AGENT_AGENT__STATE_DIR=/var/lib/ixon-agent \
    AGENT_STATUS__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER ixon-agent
VOLUME ["/var/lib/ixon-agent"]
EXPOSE 9108
STOPSIGNAL SIGTERM
# ready: the PLC answers, the outbox is within bounds, the state is durable (the port is the
# config's). Unhealthy says why in `docker inspect`; Docker itself does not restart for it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
  CMD ["ixon-agent", "health"]
ENTRYPOINT ["ixon-agent"]
CMD ["run"]
