"""Ingest: every inbound message through one router (``router``), and what asks for a
description: triggers and requests (``trigger_topics``), Frigate events, intervals, motion, and
Home Assistant's settings (``controls``)."""
