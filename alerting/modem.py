"""The GSM modem through python-gammu: connect (and unlock the SIM), check the network, send a
text in as many parts as it needs, identify the modem for `cli.py test-modem`.

Every Gammu failure comes out as a ModemError (alerting/faults.py) saying what is wrong and what
to do, with `maybe_sent` set when it came after a part was handed to the modem.

Closing a connection to a modem that does not answer (hung firmware, the wrong port) takes Gammu
minutes: python-gammu first turns the modem's notifications off, waiting for each answer in turn.
So a connection is closed by a thread of its own, waited for CLOSE_WAIT s at most; until it is
closed (the port is held), connecting again fails at once saying the modem does not answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gammu

from alerting.encoding import SMSC_FROM_SIM, SMSEncodingError, cut_to_fit, encode_parts
from alerting.faults import (
    BAD_TEXT,
    NO_CONFIG,
    NO_NETWORK,
    NOT_CONNECTED,
    PIN_REFUSED,
    SEND_HINTS,
    SIM_LOCKED,
    TOO_LONG_HINT,
    UNKNOWN_FATE,
    ModemError,
    translate,
)
from alerting.phone import masked
from alerting.pin_record import REFUSED, PinRecord, PinRecordError
from pipeline.config import ModemConfig

REGISTERED = frozenset({"HomeNetwork", "RoamingNetwork"})
PIN_CODE_TYPE = "PIN"  # what EnterSecurityCode takes; GetSecurityStatus says "PIN" (python-gammu 3) or "Pin"
UNSUPPORTED = (gammu.ERR_NOTSUPPORTED, gammu.ERR_NOTIMPLEMENTED)
GAMMURC_SECTION = 0  # [gammu], the first section of a Gammu config file
CONFIG_SLOT = 0  # the state machine's first configuration
# s a close is waited for: a modem that answers is closed at once; one that does
# not keeps Gammu waiting about 7 minutes (measured on a silent port), in the background
CLOSE_WAIT = 3.0
STILL_CLOSING = (
    "Gammu is still closing the last connection, waiting for answers that do not come; "
    "power the modem off and on if this lasts"
)

log = logging.getLogger(__name__)


class ModemLike(Protocol):
    """What the sender needs from a modem (the real one below, or a test's fake)."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None: ...

    def check_network(self) -> None: ...

    def send_text(self, number: str, text: str, on_part: Callable[[], None] | None = None) -> list[int]: ...

    def identify(self) -> dict[str, str]: ...

    def terminate(self) -> None: ...


@dataclass
class Modem:
    """One modem connection: `connect()` before use, `terminate()` after (and after any failure).

    `machine_factory` makes the gammu.StateMachine (tests pass one that injects faults). A PIN the
    SIM refused is never entered again (3 wrong ones lock the SIM), also after a restart once
    `data_dir` is given (alerting/pin_record.py), until modem.pin is changed."""

    config: ModemConfig
    machine_factory: Callable[[], Any] | None = None
    data_dir: Path | None = None
    _machine: Any = field(default=None, repr=False)
    _settings: dict[str, Any] = field(default_factory=dict, repr=False)  # as Gammu read them
    _sim_smsc: str = field(default="", repr=False)  # the SIM's SMS centre, read once per connection
    _closing: threading.Thread | None = field(default=None, repr=False)  # closes the last machine
    _pin_record: PinRecord = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pin_record = PinRecord(self.data_dir)

    @property
    def device(self) -> str:
        return str(self._settings.get("Device") or self.config.device)

    @property
    def connection(self) -> str:
        return str(self._settings.get("Connection") or self.config.connection)

    @property
    def connected(self) -> bool:
        return self._machine is not None

    def connect(self) -> None:
        """Initialise the modem and unlock the SIM; ModemError says what is wrong. A failed start is
        closed too (Gammu may hold the port open): see terminate()."""
        if self._machine is not None:
            return
        if not self._closed(CLOSE_WAIT):
            raise translate(_still_closing(), "modem start", self.device, self.connection)
        self._machine = (self.machine_factory or gammu.StateMachine)()
        try:
            self._start()
        except BaseException:  # also Ctrl-C in Init: the machine must not be freed here (minutes)
            self.terminate()
            raise

    def _encode(self, number: str, text: str) -> list[dict]:
        """`text`'s SMS parts to `number`; a text too long for SMS is cut to what fits, never held
        back: it would hold up every later text to the number too."""
        try:
            return encode_parts(number, text, self.config.smsc)
        except SMSEncodingError as exc:
            cut = cut_to_fit(text)
            log.warning("the text to %s is cut to %d characters: %s; %s", masked(number), len(cut), exc, TOO_LONG_HINT)
            return encode_parts(number, cut, self.config.smsc)

    def check_network(self) -> None:
        """Raise a (retryable) ModemError unless the modem is registered on a network."""
        machine = self._require()
        try:
            info = machine.GetNetworkInfo()
        except UNSUPPORTED:
            return  # cannot tell: let the send try
        except gammu.GSMError as exc:
            raise translate(exc, "network check", self.device) from None
        state = info.get("State", "unknown")
        if state not in REGISTERED:
            raise ModemError(
                f"no mobile network (the modem reports {state}, signal {self._signal()}): check the antenna, "
                "the SIM's plan and credit; texts wait until the network is back",
                NO_NETWORK,
            )

    def send_text(self, number: str, text: str, on_part: Callable[[], None] | None = None) -> list[int]:
        """Send every part of `text` to `number`; the modem's message references, one per part.

        `on_part` is called after each accepted part (the sender beats its heartbeat there)."""
        machine = self._require()
        try:
            parts = self._encode(number, text)
        except ValueError as exc:  # a bad number: no modem can send to it
            raise ModemError(f"cannot send to {number}: {exc}", BAD_TEXT, retryable=False, modem_down=False) from None
        if smsc := self._smsc_from_sim(machine):
            for part in parts:
                part["SMSC"] = {"Number": smsc}
        references: list[int] = []
        for index, part in enumerate(parts, 1):
            try:
                references.append(int(machine.SendSMS(part)))
            except gammu.GSMError as exc:
                error = translate(exc, f"sending part {index} of {len(parts)}", self.device, hints=SEND_HINTS)
                error.maybe_sent = bool(references) or error.code in UNKNOWN_FATE
                raise error from None
            if on_part is not None:
                on_part()
        return references

    def identify(self) -> dict[str, str]:
        """Manufacturer, model, firmware, IMEI, SIM, network, signal, SMS centre and clock."""
        machine = self._require()
        network = self._optional(machine.GetNetworkInfo)
        if isinstance(network, dict):
            network = " ".join(str(network.get(key, "")) for key in ("State", "NetworkName", "NetworkCode"))
        model = self._optional(machine.GetModel)
        if isinstance(model, tuple):
            model = " ".join(part for part in model if part and part != "unknown")
        firmware = self._optional(machine.GetFirmware)
        smsc = self.config.smsc or self._optional(lambda: machine.GetSMSC(**SMSC_FROM_SIM).get("Number"))
        return {
            "manufacturer": str(self._optional(machine.GetManufacturer)),
            "model": str(model),
            "firmware": str(firmware[0] if isinstance(firmware, tuple) else firmware),
            "imei": str(self._optional(machine.GetIMEI)),
            "sim": _sim_state(self._optional(machine.GetSecurityStatus)),
            "network": " ".join(str(network).split()),
            "signal": self._signal(),
            "sms centre": str(smsc) + ("" if self.config.smsc else " (from the SIM)"),
            "modem clock": str(self._optional(machine.GetDateTime)),
        }

    def terminate(self) -> None:
        """Close the connection (safe to call at any time), waiting CLOSE_WAIT s at most: the close
        of a modem that does not answer goes on in the background, and holds the port meanwhile."""
        machine, self._machine = self._machine, None
        self._sim_smsc = ""
        if machine is None:
            return
        self._closing = threading.Thread(target=_close, args=(machine,), name="modem-close", daemon=True)
        self._closing.start()
        del machine  # the thread holds the only reference: freeing it elsewhere would wait as long
        if not self._closed(CLOSE_WAIT):
            log.warning(
                "the modem on %s does not answer: its connection is closed in the background, as Gammu "
                "waits minutes for answers (the port stays held meanwhile)",
                self.device,
            )

    # --- helpers -------------------------------------------------------------------------------
    def _start(self) -> None:
        try:
            self._configure(self._machine)
            self._machine.Init()
        except gammu.GSMError as exc:
            raise translate(exc, "modem start", self.device, self.connection) from None
        self._unlock_sim()

    def _closed(self, wait: float) -> bool:
        """Whether the last connection is closed, waiting `wait` s at most for it."""
        if self._closing is not None:
            self._closing.join(wait)
            if self._closing.is_alive():
                return False
            self._closing = None
        return True

    def _smsc_from_sim(self, machine: Any) -> str:
        """The SIM's SMS centre when modem.smsc is empty, read once per connection: a modem that does
        not answer fails here as a timeout, where SendSMS would say the SIM has no SMS centre. ""
        lets SendSMS read it itself (and say what is wrong)."""
        if self.config.smsc or self._sim_smsc:
            return self._sim_smsc
        try:
            self._sim_smsc = str(machine.GetSMSC(**SMSC_FROM_SIM).get("Number") or "")
        except gammu.GSMError as exc:
            error = translate(exc, "reading the SMS centre number from the SIM", self.device)
            if error.modem_down and not isinstance(exc, UNSUPPORTED):
                raise error from None
        return self._sim_smsc

    def _configure(self, machine: Any) -> None:
        if self.config.gammurc:
            if not Path(self.config.gammurc).is_file():
                raise ModemError(
                    f"Gammu config file {self.config.gammurc} does not exist (modem.gammurc)",
                    NO_CONFIG,
                    retryable=False,
                )
            try:
                machine.ReadConfig(Section=GAMMURC_SECTION, Configuration=CONFIG_SLOT, Filename=self.config.gammurc)
            except gammu.GSMError as exc:
                raise translate(exc, f"reading {self.config.gammurc}") from None
        else:
            settings = {"Device": self.config.device, "Connection": self.config.connection}
            machine.SetConfig(CONFIG_SLOT, {**settings, "Model": self.config.model})
        self._settings = machine.GetConfig(CONFIG_SLOT)

    def _unlock_sim(self) -> None:
        status = self._security_status()
        if status is None:
            return
        if status.upper() != PIN_CODE_TYPE:
            raise ModemError(f"the SIM asks for its {status}: unlock it in a phone first", SIM_LOCKED, retryable=False)
        if not self.config.pin:
            raise ModemError("the SIM asks for a PIN: set modem.pin in the config", SIM_LOCKED, retryable=False)
        pin = self.config.pin
        try:
            before = self._pin_record.state(pin)
        except PinRecordError as exc:
            raise ModemError(f"the SIM asks for its PIN and {exc}", PIN_REFUSED, retryable=False) from None
        if before == REFUSED:
            raise ModemError(self._refused_text("refused before"), PIN_REFUSED, retryable=False)
        standing = self._pin_record.entering(pin, before)
        failure = "no error"
        try:
            self._machine.EnterSecurityCode(Type=PIN_CODE_TYPE, Code=pin)
        except gammu.ERR_SECURITYERROR:
            self._pin_record.refused(pin)
            raise ModemError(self._refused_text("the SIM said it is wrong"), PIN_REFUSED, retryable=False) from None
        except gammu.GSMError as exc:
            failure = type(exc).__name__  # taken or not: the SIM tells below
        if (status := self._security_status()) is None:  # a failure here leaves `standing` recorded
            log.info("SIM unlocked with modem.pin")
            self._pin_record.taken()
            return
        how = f"{failure}, and the SIM still asks for its {status}"
        if standing == REFUSED:
            raise ModemError(self._refused_text(how), PIN_REFUSED, retryable=False)
        raise ModemError(f"entering modem.pin gave {how}: it is tried once more, after a pause", PIN_REFUSED)

    def _refused_text(self, how: str) -> str:
        path = self._pin_record.path
        kept = path is not None and path.exists()
        where = f" (kept in {path}: delete it to enter the same PIN again, e.g. after swapping the SIM)"
        return (
            f"the SIM did not take modem.pin ({how}); not trying it again, as 3 wrong PINs lock the SIM: "
            f"check modem.pin and restart the detector{where if kept else ''}"
        )

    def _security_status(self) -> str | None:
        try:
            return self._machine.GetSecurityStatus()
        except UNSUPPORTED:
            return None
        except gammu.GSMError as exc:
            raise translate(exc, "SIM check", self.device) from None

    def _signal(self) -> str:
        signal = self._optional(self._require().GetSignalQuality)
        return f"{signal.get('SignalPercent')}%" if isinstance(signal, dict) else str(signal)

    def _require(self) -> Any:
        if self._machine is None:
            raise ModemError("the modem is not connected", NOT_CONNECTED)
        return self._machine

    @staticmethod
    def _optional(getter: Callable[[], Any]) -> Any:
        """A value for the identity report; what the modem cannot tell is shown, not raised."""
        try:
            return getter()
        except gammu.GSMError as exc:
            return f"n/a ({type(exc).__name__})"


def _still_closing() -> gammu.GSMError:
    """The port is still held by the last connection: the modem did not answer (it is not tried)."""
    return gammu.ERR_TIMEOUT({"Text": STILL_CLOSING, "Where": "Init", "Code": gammu.Errors["ERR_TIMEOUT"]})


def _close(machine: Any) -> None:
    """Terminate a machine, also one whose Init failed (Gammu may hold the port open); freed here."""
    try:
        machine.Terminate()
    except gammu.GSMError as exc:
        log.debug("modem terminate failed: %s", type(exc).__name__)


def _sim_state(status: object) -> str:
    if status is None:
        return "ready"
    if isinstance(status, str) and status.startswith("n/a"):
        return status
    return f"asks for its {status}"
