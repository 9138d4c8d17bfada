"""Texts out through a USB GSM modem: outbox (SQLite) -> sender (the SMS process) -> modem (python-gammu).

phone: E.164 numbers. encoding: text -> SMS parts. outbox: the persistent queue. compose: alert and
summary texts, the hourly limit. faults: Gammu errors as ModemError. modem: the modem. sender: the
SMS process. modem_check: `cli.py test-modem`.
"""
