"""The agentic layer over MQTT: edge nodes, the agent controller, their messages and topics, the
broker set-up, model dissemination, and the control-plane benchmark. See README "Agents over MQTT"."""
