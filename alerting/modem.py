"""The GSM modem through python-gammu: connect, identify, send a (multi-part) text.

Gammu's errors are translated into ModemError with a message a person can act on, and
classified: `maybe_sent` when the failure came after a part was handed to the modem (the
text may have gone out: resend it as a repeat).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gammu

from pipeline.config import ModemConfig

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")
SMSC_FROM_SIM = {"Location": 1}

log = logging.getLogger(__name__)

_HINTS = {
    "ERR_DEVICENOTEXIST": "modem device {device} not found: is the modem plugged in? see `ls /dev/serial/by-id/`",
    "ERR_DEVICENOPERMISSION": "modem device {device} cannot be opened (missing, or no permission): is it plugged "
    "in, and is this user in the dialout group?",
    "ERR_DEVICEOPENERROR": "modem device {device} cannot be opened: is it plugged in and free?",
    "ERR_DEVICEBUSY": "modem device {device} is in use by another program (ModemManager? "
    "`sudo systemctl disable --now ModemManager`)",
    "ERR_DEVICELOCKED": "modem device {device} is locked by another program (ModemManager?)",
    "ERR_TIMEOUT": "the modem did not answer in time",
    "ERR_NOTCONNECTED": "the modem is not connected",
    "ERR_NOSIM": "no SIM card in the modem",
    "ERR_SECURITYERROR": "the SIM refused the PIN: check modem.pin",
    "ERR_NETWORK_ERROR": "the mobile network refused the text (no signal or no credit?)",
    "ERR_NOSERVICE": "no mobile network service",
    "ERR_EMPTYSMSC": "no SMS centre number on the SIM: set modem.smsc",
    "ERR_UNKNOWNCONNECTIONTYPESTRING": "unknown Gammu connection {connection!r}: use e.g. at, at115200",
    "ERR_CANTOPENFILE": "cannot open the Gammu config file",
}
_UNKNOWN_FATE = {"ERR_TIMEOUT", "ERR_UNKNOWNRESPONSE", "ERR_DEVICEREADERROR", "ERR_NOTCONNECTED"}


class ModemError(RuntimeError):
    def __init__(self, message: str, code: str = "", maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.maybe_sent = maybe_sent


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encode_parts(number: str, text: str, smsc: str = "") -> list[dict]:
    """The text as Gammu message parts (concatenated when long; UCS-2 only when GSM-7 cannot hold it)."""
    parts = gammu.EncodeSMS(
        {"Class": -1, "Unicode": not is_gsm7(text), "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}]}
    )
    for part in parts:
        part["SMSC"] = {"Number": smsc} if smsc else dict(SMSC_FROM_SIM)
        part["Number"] = number
    return parts


@dataclass
class Modem:
    """One modem connection; `connect()` before use, `terminate()` after."""

    config: ModemConfig
    _machine: gammu.StateMachine | None = None

    @property
    def device(self) -> str:
        return self.config.gammurc or self.config.device

    def connect(self) -> None:
        machine = gammu.StateMachine()
        try:
            if self.config.gammurc:
                if not Path(self.config.gammurc).is_file():
                    raise ModemError(f"Gammu config file {self.config.gammurc} does not exist")
                machine.ReadConfig(Section=0, Configuration=0, Filename=self.config.gammurc)
            else:
                machine.SetConfig(
                    0,
                    {"Device": self.config.device, "Connection": self.config.connection, "Model": self.config.model},
                )
            machine.Init()
            self._machine = machine
            self._unlock_sim()
        except gammu.GSMError as exc:
            self._machine = None
            raise self._translate(exc, "connect") from None

    def _unlock_sim(self) -> None:
        status = self._machine.GetSecurityStatus()
        if status is None:
            return
        if status != "PIN" or not self.config.pin:
            raise ModemError(f"the SIM asks for its {status}: set modem.pin (or unlock the SIM once by hand)")
        self._machine.EnterSecurityCode("PIN", self.config.pin)

    @property
    def connected(self) -> bool:
        return self._machine is not None

    def send_text(self, number: str, text: str) -> list[int]:
        """Send every part; the references the modem gave. ModemError.maybe_sent after a submitted part."""
        parts = encode_parts(number, text, self.config.smsc)
        references = []
        for part in parts:
            try:
                references.append(self._machine.SendSMS(part))
            except gammu.GSMError as exc:
                error = self._translate(exc, "send")
                error.maybe_sent = bool(references) or error.code in _UNKNOWN_FATE
                raise error from None
        return references

    def identify(self) -> dict[str, object]:
        m = self._machine
        firmware = m.GetFirmware()
        network = m.GetNetworkInfo()
        signal = m.GetSignalQuality()
        return {
            "manufacturer": m.GetManufacturer(),
            "model": " ".join(part for part in m.GetModel() if part and part != "unknown"),
            "firmware": firmware[0],
            "imei": m.GetIMEI(),
            "sim": m.GetSecurityStatus() or "ready",
            "network": f"{network.get('State')} {network.get('NetworkName', '')}".strip(),
            "signal": f"{signal.get('SignalPercent')}%",
        }

    def network_time(self) -> object:
        """The modem's clock (set by the network on most modems)."""
        return self._machine.GetDateTime()

    def terminate(self) -> None:
        if self._machine is not None:
            try:
                self._machine.Terminate()
            except gammu.GSMError as exc:
                log.debug("modem terminate failed: %s", exc)
            self._machine = None

    def _translate(self, exc: gammu.GSMError, during: str) -> ModemError:
        code = type(exc).__name__
        detail = exc.args[0].get("Text", "") if exc.args and isinstance(exc.args[0], dict) else str(exc)
        hint = _HINTS.get(code, "modem error")
        message = hint.format(device=self.device, connection=self.config.connection)
        return ModemError(f"{message} ({code} during {during}: {detail})", code=code)
