"""The outbox: one SQLite file with the messages to deliver, the dead letters, the alarm
states and the agent's clock. An alarm's state change and its messages are written in one
transaction; a full disk keeps new ones in memory until they can be written."""
