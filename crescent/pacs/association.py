"""Open a DICOM association as a clear success or a clear :class:`PacsError`.

pynetdicom reports a failed association as flags on the association object and
log lines; here a failure becomes one exception whose message names the called
AE title, host and port, our calling AE title and the reason: the TCP error
(connection refused, time-out, unknown host) when the port cannot be reached,
the A-ASSOCIATE-RJ result/source/reason when the peer rejects us, or the
presentation contexts the peer refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crescent.pacs.address import DEFAULT_CALLING_AE, PacsAddress, check_ae_title

if TYPE_CHECKING:
    from pynetdicom.association import Association

#: Seconds to wait for the TCP connection, the association answer and each DIMSE response.
DEFAULT_TIMEOUT_S = 10.0
#: Presentation contexts one association may propose (PS3.8 9.3.2.2: odd IDs 1..255).
MAX_CONTEXTS = 128


class PacsError(RuntimeError):
    """A DICOM peer could not be used: unreachable, association rejected or aborted, or a service refused.

    ``address`` is the peer, ``calling_ae`` our AE title, ``reason`` a short human reason.
    """

    def __init__(self, address: PacsAddress, calling_ae: str, reason: str, action: str = "associate with") -> None:
        self.address, self.calling_ae, self.reason = address, calling_ae, reason
        super().__init__(f"cannot {action} AE {address.ae_title!r} at {address.host}:{address.port} "
                         f"(calling AE {calling_ae!r}): {reason}")


def _probe(address: PacsAddress, timeout_s: float) -> str | None:
    """The TCP-level reason the peer cannot be reached, or None if a connection opens."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s):
            return None
    except socket.gaierror as exc:
        return f"host {address.host!r} not found ({exc.strerror or exc})"
    except TimeoutError:
        return f"no answer from {address.host}:{address.port} within {timeout_s:g} s (TCP connect timed out)"
    except OSError as exc:
        return f"{exc.strerror or exc} (TCP port {address.port}: is the PACS running and listening there?)"


def open_association(address: PacsAddress, contexts: Sequence[Any], calling_ae: str = DEFAULT_CALLING_AE,
                     timeout_s: float = DEFAULT_TIMEOUT_S, required: Iterable[str] = ()) -> Association:
    """An established association to ``address`` proposing ``contexts`` (pynetdicom presentation contexts).

    ``required``: abstract syntaxes (SOP class UIDs) the peer must accept, else :class:`PacsError`.
    """
    from pynetdicom import AE, evt
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    calling_ae = check_ae_title(calling_ae, "calling AE title")
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts: one association carries at most {MAX_CONTEXTS}")
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.requested_contexts = list(contexts)
    answers: list[Any] = []

    def keep(event: Any) -> None:
        if isinstance(event.primitive, A_ASSOCIATE):
            answers.append(event.primitive)

    assoc = ae.associate(address.host, address.port, ae_title=address.ae_title,
                         evt_handlers=[(evt.EVT_ACSE_RECV, keep)])
    if not assoc.is_established:
        if assoc.is_rejected and answers:
            rj = answers[-1]
            kind = {1: "permanently", 2: "transiently"}.get(rj.result, "")
            reason = f"association rejected {kind} by the {rj.source_str.lower()}: {rj.reason_str}"
        elif answers and not assoc.accepted_contexts:
            reason = "the peer accepted none of the presentation contexts proposed " + _refused(assoc)
        else:
            reason = _probe(address, timeout_s) or "the peer aborted or did not answer the association request"
        raise PacsError(address, calling_ae, reason)
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    missing = [uid for uid in required if uid not in accepted]
    if missing:
        assoc.release()
        raise PacsError(address, calling_ae, "the peer refused the presentation context of "
                        + ", ".join(f"{_name(uid)} ({uid})" for uid in missing))
    return assoc


def _name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else "unknown SOP class"


def _refused(assoc: Any) -> str:
    return "(" + ", ".join(f"{_name(str(cx.abstract_syntax))}" for cx in assoc.rejected_contexts[:6]) + ")"
