"""Outbound and inbound messages: the outbox, providers (console, Twilio, Aliyun), receipts.

Empty until the sending issue; see ARCHITECTURE.md for what goes here.
"""
