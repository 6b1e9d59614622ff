"""Where the agent meets its stand-ins: ``ixon-agent demo`` (machine simulator, agent, ilert
and Sumo stand-ins on loopback). It may import both ``agent`` and ``simulators``; the agent
never imports it, the command line loads it only when asked."""
