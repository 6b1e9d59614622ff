"""Stand-ins for the machine (Modbus) and for ilert, so the chain runs on one machine."""
