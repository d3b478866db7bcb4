"""HELLO in every device state, and a fault latched before the first HELLO (simulated gantry, virtual time).

What is checked, and against what:

* HELLO_REPLY.state for each of the seven device states is taken from the text of protocols/SPEC.md
  section 3: the table that follows "HELLO is accepted in every state. A new session never inherits a
  plan, and never clears a hold or a fault:" (state | HELLO_REPLY.state | effect). The file is read and
  the table parsed here; the device's own tables (protocols/wire/device_states.py) are not used as the
  oracle. Each test also checks that the row's *effect* text still says what the test checks.
* The effect of each row, as observed on the wire (STATUS, STATE_CHANGED, MOTION_DONE, EXPOSURE_DONE,
  TELEMETRY, GET_EXPOSURE_LOG, NAKs) plus, for "no further X-ray", the generator itself:
  BOOT opens the session; IDLE changes nothing else; BUSY keeps the motion and sends its MOTION_DONE to
  the new session; ARMED disarms and reports the plan; EXPOSING stops the plan as by ABORT (the window
  in progress ends with EXPOSURE_DONE ABORTED, resumed_plan_id / resumed_exposures_done report it, no
  further X-ray); SAFE_HOLD and FAULT are kept until RESET_FAULT with the cause gone.
* A fault latched in BOOT (before any HELLO), against SPEC section 3 ("never clears ... a fault"; no
  command leaves FAULT while the cause is latched; RESET_FAULT with the cause gone leaves it) and the
  firmware's promise (simulator/gantry/firmware.py module docstring: every cause latches in every
  state including BOOT; a transition out of BOOT into a normal state is followed at once by the
  latched cause's transition). Of the injectable faults only ENCODER_GLITCH latches with nothing
  moving and no exposure (the e-stop is covered by test_gantry_latching.py); MOTOR_STALL, TUBE_ARC and
  DETECTOR_TIMEOUT injected in BOOT are only *pending* until the next move / exposure / readout, and
  the MOTOR_STALL case is checked for what the firmware does (not a SPEC promise).

Every re-HELLO comes from a new host (a fresh link, so its HELLO carries SYN) while the old host falls
silent, as a host that restarts would.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import simpy

from protocols.wire import messages as M
from protocols.wire import specgen
from protocols.wire.catalogue import DeviceState, ErrorCode, ExposureStatus, FaultCode, SimInput
from simulator.gantry import GantryConfig, load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, hello, make_plan, open_session
from simulator.gantry.config import small_detector

S = DeviceState

#: The sentence of SPEC.md section 3 that introduces the HELLO table (line breaks in the file are free).
HELLO_TABLE_INTRO = ("HELLO is accepted in every state. A new session never inherits a plan, and never clears a "
                     "hold or a fault:")


def cfg_small() -> GantryConfig:
    return load_config().with_overrides(geometry={"detector": small_detector(16, 20, 8).model_dump()},
                                        phantom={"name": "uniform"})


@functools.lru_cache(maxsize=1)
def spec_hello_table() -> dict[str, tuple[str, str]]:
    """SPEC.md's HELLO table: state name -> (HELLO_REPLY.state name, effect text), parsed from the file."""
    text = Path(specgen.SPEC_PATH).read_text(encoding="utf-8")
    found = re.search(r"\s+".join(map(re.escape, HELLO_TABLE_INTRO.split())), text)
    assert found is not None, f"SPEC.md no longer says {HELLO_TABLE_INTRO!r}"
    lines = text[found.end():].splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, "no table follows the HELLO sentence of SPEC.md section 3"
    assert rows[0] == ["state", "HELLO_REPLY.state", "effect"], f"unexpected header {rows[0]}"
    assert rows[1] and set("".join(rows[1])) <= set("-: "), f"no separator row: {rows[1]}"
    table = {row[0]: (row[1], row[2]) for row in rows[2:]}
    assert len(table) == len(rows) - 2, "a state appears twice in the HELLO table"
    return table


def spec_reply_state(state: str) -> int:
    """The HELLO_REPLY.state SPEC.md's table gives for a HELLO in ``state``."""
    return int(S[spec_hello_table()[state][0].split()[0]])  # the first word (BOOT adds the latched-cause case)


def spec_effect(state: str) -> str:
    """The effect column of the row of ``state``, whitespace normalised."""
    return " ".join(spec_hello_table()[state][1].split())


def new_host(env: simpy.Environment, ep, old: LinkClient | None, session_id: int) -> tuple[LinkClient, simpy.Event]:
    """A new host session: the old host falls silent, a fresh link sends HELLO (SYN); returns (host, reply event)."""
    if old is not None:
        old.go_silent()
    host = LinkClient(env, ep, initial_seq=session_id & 0xFFFF)
    return host, host.request(hello(session_id=session_id))


def state_changes(client: LinkClient) -> list[tuple[int, int, int, int]]:
    """(old, new, cause_msg_id, fault_code) of the STATE_CHANGED events ``client`` received."""
    return [(m.old_state, m.new_state, m.cause_msg_id, m.fault_code) for m in client.of("STATE_CHANGED")]


def run(env: simpy.Environment, script, out: dict, limit_s: float = 20.0) -> None:
    """Run ``script`` (a SimPy process function); fail, not hang, if it has not ended after ``limit_s`` virtual s."""
    proc = env.process(script())
    env.run(until=env.any_of([proc, env.timeout(limit_s)]))
    assert proc.triggered, (f"the script did not end within {limit_s} s of virtual time (an awaited answer or event "
                            f"never came); it got as far as {list(out)}")


def test_the_spec_hello_table_has_one_row_per_device_state() -> None:
    table = spec_hello_table()
    assert sorted(table) == sorted(s.name for s in S), f"rows {sorted(table)}"
    for state, (reply, _effect) in table.items():
        named = re.findall(r"[A-Z][A-Z_]+", reply)
        assert named and all(n in S.__members__ for n in named), f"{state}: HELLO_REPLY.state {reply!r} names no DeviceState"


def test_hello_in_boot_opens_the_session(tmp_path: Path) -> None:
    assert "opens the session" in spec_effect("BOOT")
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=41, data_dir=tmp_path, event_log=None)
    host = LinkClient(env, ep)
    out: dict = {}

    def script():
        out["status_boot"] = yield host.request(M.GetStatus())
        out["hello"] = yield host.request(hello(session_id=0xB001))
        yield env.timeout(0.1)
        out["status"] = yield host.request(M.GetStatus())

    run(env, script, out)
    # before HELLO there is no session (SPEC section 3's command table: GET_STATUS in BOOT is NO_SESSION)
    assert out["status_boot"].NAME == "NAK" and out["status_boot"].error_code == int(ErrorCode.NO_SESSION)
    reply = out["hello"]
    assert reply.NAME == "HELLO_REPLY" and reply.session_id == 0xB001
    assert reply.state == spec_reply_state("BOOT"), f"HELLO_REPLY.state {S(reply.state).name}"
    assert (reply.resumed_plan_id, reply.resumed_exposures_done) == (0, 0)
    assert state_changes(host) == [(int(S.BOOT), spec_reply_state("BOOT"), M.Hello.ID, 0)]
    # the session is open: commands refused with NO_SESSION before are answered now
    assert out["status"].NAME == "STATUS" and out["status"].state == spec_reply_state("BOOT")


def test_hello_in_idle_changes_nothing_else(tmp_path: Path) -> None:
    assert "nothing else changes" in spec_effect("IDLE")
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=42, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(first)
        done = first.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield first.request(M.MoveArc(target_mdeg=4000, speed_mdeg_s=0))
        yield done
        yield env.timeout(0.2)
        out["before"] = yield first.request(M.GetStatus())
        host, reply = new_host(env, ep, first, 0x1D1E)
        out["host"] = host
        out["hello"] = yield reply
        out["t_hello"] = env.now
        yield env.timeout(0.5)
        out["after"] = yield host.request(M.GetStatus())
        out["arm"] = yield host.request(make_plan(3, [-1.0, 1.0], continuous=False))  # still homed: no NOT_HOMED

    run(env, script, out)
    reply, before, after = out["hello"], out["before"], out["after"]
    assert before.state == int(S.IDLE)
    assert reply.state == spec_reply_state("IDLE"), f"HELLO_REPLY.state {S(reply.state).name}"
    assert (reply.resumed_plan_id, reply.resumed_exposures_done) == (0, 0)
    assert state_changes(out["host"]) == [], "HELLO in IDLE changed the state"
    keep = ("state", "fault_code", "interlocks", "homed", "arc_mdeg", "force_dn", "thickness_um", "armed_plan_id",
            "exposures_done", "detector_state", "exposure_counter")
    changed = {k: (getattr(before, k), getattr(after, k)) for k in keep if getattr(before, k) != getattr(after, k)}
    assert not changed, f"HELLO in IDLE changed {changed}"
    assert out["arm"].NAME == "ACK", f"ARM_PLAN after HELLO in IDLE: {out['arm'].to_dict()}"


def test_hello_in_busy_keeps_the_motion_and_its_motion_done_goes_to_the_new_session(tmp_path: Path) -> None:
    effect = spec_effect("BUSY")
    assert "motion in progress continues" in effect and "MOTION_DONE goes to the new session" in effect
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=43, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(first)
        out["move"] = yield first.request(M.MoveArc(target_mdeg=10_000, speed_mdeg_s=5_000))  # 2 s at 5 deg/s
        yield env.timeout(0.5)
        out["status_before"] = yield first.request(M.GetStatus())
        host, reply = new_host(env, ep, first, 0xB05E)
        out["host"] = host
        out["hello"] = yield reply
        out["t_hello"] = env.now
        out["status_after"] = yield host.request(M.GetStatus())
        out["done"] = yield host.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield env.timeout(0.1)
        out["status_end"] = yield host.request(M.GetStatus())

    run(env, script, out)
    host, reply = out["host"], out["hello"]
    moves = [r for r in gantry.log.records() if r["kind"] == "command" and r["msg"] == "MOVE_ARC"]
    assert out["move"].NAME == "ACK" and out["status_before"].state == int(S.BUSY)
    assert reply.state == spec_reply_state("BUSY"), f"HELLO_REPLY.state {S(reply.state).name}"
    assert (reply.resumed_plan_id, reply.resumed_exposures_done) == (0, 0)
    mid = out["status_after"]
    assert mid.state == int(S.BUSY) and 0 < mid.arc_mdeg < 10_000, f"after HELLO: {mid.to_dict()}"
    done = out["done"]
    # the old session's MOVE_ARC ends where it was sent, and the new session hears of it
    assert (done.cause_msg_id, done.ok, done.arc_mdeg) == (M.MoveArc.ID, 1, 10_000), done.to_dict()
    assert done.cause_seq == moves[0]["seq"]
    assert host.of("MOTION_DONE") == [done]
    assert state_changes(host) == [(int(S.BUSY), int(S.IDLE), M.MoveArc.ID, 0)]
    assert out["status_end"].state == int(S.IDLE) and out["status_end"].arc_mdeg == 10_000


def test_hello_in_armed_and_in_safe_hold_answer_the_spec_table(tmp_path: Path) -> None:
    """Covered in test_gantry_spec_answers.py with literal states; here the states come from SPEC's table."""
    assert "disarmed and reported in resumed_plan_id" in spec_effect("ARMED")
    assert "the hold is kept" in spec_effect("SAFE_HOLD")
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=44, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(first)
        plan = make_plan(12, [-2.0, 2.0], continuous=False)
        assert (yield first.request(plan)).NAME == "ACK"
        host, reply = new_host(env, ep, first, 0xA12)
        out["hello_armed"] = yield reply
        out["fire"] = yield host.request(M.Fire(plan_id=12, digest=plan.digest))
        yield host.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=0))
        yield env.timeout(0.1)
        host2, reply = new_host(env, ep, host, 0x5A1)
        out["hello_hold"] = yield reply
        yield env.timeout(0.3)
        out["status_hold"] = yield host2.request(M.GetStatus())

    run(env, script, out)
    armed = out["hello_armed"]
    assert armed.state == spec_reply_state("ARMED") and armed.resumed_plan_id == 12
    assert (out["fire"].error_code, out["fire"].detail) == (int(ErrorCode.NOT_ARMED), 0)
    assert out["hello_hold"].state == spec_reply_state("SAFE_HOLD")
    assert out["status_hold"].state == int(S.SAFE_HOLD)


def test_hello_while_exposing_stops_the_plan_as_by_abort(tmp_path: Path) -> None:
    effect = spec_effect("EXPOSING")
    assert "stopped as by ABORT" in effect and "EXPOSURE_DONE status ABORTED" in effect
    assert "resumed_plan_id / resumed_exposures_done" in effect
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=45, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    windows: list[float] = []  # every X-ray window the generator opens (virtual time)
    expose = gantry.generator.expose

    def spy(*args):
        windows.append(env.now)
        return expose(*args)

    gantry.generator.expose = spy
    out: dict = {}
    pulse_us = 200_000

    def script():
        yield from open_session(first)
        plan = make_plan(21, [-3.0, 0.0, 3.0], kv=28.0, mas=4.0, pulse_ms=pulse_us / 1000, continuous=False)
        assert (yield first.request(plan)).NAME == "ACK"
        first_done = first.wait_event(lambda m: m.NAME == "EXPOSURE_DONE")
        assert (yield first.request(M.Fire(plan_id=21, digest=plan.digest))).NAME == "ACK"
        yield first_done
        while not gantry.generator.on:  # the second window opens
            yield env.timeout(0.001)
        yield env.timeout(0.05)  # 50 ms into its 200 ms
        out["on_at_hello"] = gantry.generator.on
        host, reply = new_host(env, ep, first, 0xE8)
        out["host"] = host
        out["hello"] = yield reply
        out["t_reply"] = env.now
        out["on_after"] = gantry.generator.on
        out["windows_at_reply"] = len(windows)
        yield env.timeout(3.0)  # the rest of the plan would have taken about 1.5 s
        out["status"] = yield host.request(M.GetStatus())
        out["ledger"] = yield host.request(M.GetExposureLog(plan_id=21, index=0))
        out["fire"] = yield host.request(M.Fire(plan_id=21, digest=plan.digest))

    run(env, script, out)
    host, reply = out["host"], out["hello"]
    assert out["on_at_hello"], "the test did not catch a window in progress"
    assert reply.state == spec_reply_state("EXPOSING"), f"HELLO_REPLY.state {S(reply.state).name}"
    assert (reply.resumed_plan_id, reply.resumed_exposures_done) == (21, 2), reply.to_dict()
    # no further X-ray: off when HELLO is answered, no window opened after it, tube voltage 0 in TELEMETRY
    assert not out["on_after"] and len(windows) == out["windows_at_reply"] == 2, windows
    after = [a.message for a in host.telemetry if a.t_s > out["t_reply"]]
    assert after and all(t.kv_ckv == 0 and t.ma_dma == 0 for t in after)
    # EXPOSURE_DONE: entry 0 complete (old session), entry 1 cut and ABORTED (new session), no entry 2
    done = {m.index: m for c in (first, host) for m in c.of("EXPOSURE_DONE") if m.plan_id == 21}
    assert sorted(done) == [0, 1], sorted(done)
    assert done[0].status == int(ExposureStatus.OK)
    cut = done[1]
    assert cut.status == int(ExposureStatus.ABORTED), cut.to_dict()
    assert cut.window_end_us - cut.window_start_us < pulse_us and cut.mas_nas < 4_000_000
    assert [m for m in host.of("EXPOSURE_DONE") if m.index == 1] == [cut]
    # the state: EXPOSING -> IDLE by the HELLO, and the device's counters agree with the two windows
    exposing_to_idle = [c for c in state_changes(host) if c[:2] == (int(S.EXPOSING), int(S.IDLE))]
    assert exposing_to_idle == [(int(S.EXPOSING), int(S.IDLE), M.Hello.ID, 0)]
    status = out["status"]
    assert (status.state, status.armed_plan_id, status.exposure_counter) == (int(S.IDLE), 0, 2), status.to_dict()
    assert out["ledger"].count == 2
    # a new session never inherits a plan: the old plan's FIRE is refused
    assert (out["fire"].error_code, out["fire"].detail) == (int(ErrorCode.NOT_ARMED), 0)


def test_hello_in_fault_keeps_the_fault_latched(tmp_path: Path) -> None:
    effect = spec_effect("FAULT")
    assert "the fault stays latched" in effect and "RESET_FAULT (cause gone) leaves it" in effect
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=46, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(first)
        faulted = first.wait_event(lambda m: m.NAME == "STATE_CHANGED" and m.new_state == int(S.FAULT))
        yield first.request(M.MoveArc(target_mdeg=10_000, speed_mdeg_s=5_000))
        yield env.timeout(0.3)
        yield first.request(M.SimInjectFault(fault_code=int(FaultCode.MOTOR_STALL), param=0))
        yield faulted
        yield env.timeout(0.5)  # the arm at rest
        out["before"] = yield first.request(M.GetStatus())
        host, reply = new_host(env, ep, first, 0xFA17)
        out["host"] = host
        out["hello"] = yield reply
        out["after"] = yield host.request(M.GetStatus())
        out["home"] = yield host.request(M.Home())
        out["abort"] = yield host.request(M.Abort(reason=0))
        out["reset_wrong"] = yield host.request(M.ResetFault(fault_code=int(FaultCode.TUBE_ARC)))
        yield env.timeout(1.0)
        out["later"] = yield host.request(M.GetStatus())
        out["changes_before_reset"] = state_changes(host)
        out["reset"] = yield host.request(M.ResetFault(fault_code=0))
        yield env.timeout(0.1)
        out["cleared"] = yield host.request(M.GetStatus())

    run(env, script, out)
    host, reply, before = out["host"], out["hello"], out["before"]
    assert before.state == int(S.FAULT) and before.fault_code == int(FaultCode.MOTOR_STALL), before.to_dict()
    assert reply.state == spec_reply_state("FAULT"), f"HELLO_REPLY.state {S(reply.state).name}"
    for key in ("after", "later"):
        st = out[key]
        assert (st.state, st.fault_code) == (int(S.FAULT), before.fault_code), f"{key}: {st.to_dict()}"
    # nothing but RESET_FAULT leaves FAULT: HOME refused, ABORT and a RESET_FAULT of another fault leave it on
    assert (out["home"].error_code, out["home"].detail) == (int(ErrorCode.BAD_STATE), int(S.FAULT))
    assert out["abort"].NAME == "ACK"
    assert out["reset_wrong"].NAME == "NAK" and out["reset_wrong"].error_code == int(ErrorCode.FAULT_ACTIVE)
    assert out["changes_before_reset"] == [], out["changes_before_reset"]
    assert out["reset"].NAME == "ACK"
    assert (out["cleared"].state, out["cleared"].fault_code) == (int(S.IDLE), 0)
    assert state_changes(host) == [(int(S.FAULT), int(S.IDLE), M.ResetFault.ID, 0)]


def test_a_fault_latched_in_boot_holds_the_first_session(tmp_path: Path) -> None:
    """ENCODER_GLITCH (2 deg, beyond the following-error limit) latches with nothing moving, before any HELLO."""
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=47, data_dir=tmp_path, event_log=None)
    gantry.inject("ENCODER_GLITCH")
    host = LinkClient(env, ep)
    glitch = int(FaultCode.ENCODER_GLITCH)
    out: dict = {}

    def script():
        yield env.timeout(0.2)
        out["status_boot"] = yield host.request(M.GetStatus())
        out["t_hello"] = env.now
        out["hello"] = yield host.request(hello(session_id=0xB007))
        yield env.timeout(0.05)
        out["status"] = yield host.request(M.GetStatus())
        out["home"] = yield host.request(M.Home())
        out["move"] = yield host.request(M.MoveArc(target_mdeg=1000, speed_mdeg_s=0))
        out["arm"] = yield host.request(make_plan(5, [0.0], continuous=False))
        out["abort"] = yield host.request(M.Abort(reason=0))
        out["reset_wrong"] = yield host.request(M.ResetFault(fault_code=int(FaultCode.TUBE_ARC)))
        host2, reply = new_host(env, ep, host, 0xB008)
        out["host2"] = host2
        out["hello2"] = yield reply
        yield env.timeout(0.5)
        out["held"] = yield host2.request(M.GetStatus())
        out["moving"] = gantry.axis.moving(env.now)
        out["reset"] = yield host2.request(M.ResetFault(fault_code=0))
        out["cleared"] = yield host2.request(M.GetStatus())
        done = host2.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["home_after"] = yield host2.request(M.Home())
        out["home_done"] = yield done

    run(env, script, out)
    # in BOOT the device has no session yet, and stays in BOOT with the cause latched
    assert out["status_boot"].NAME == "NAK" and out["status_boot"].error_code == int(ErrorCode.NO_SESSION)
    # the first session finds the fault: HELLO leaves BOOT and goes on at once to FAULT (same device time)
    assert out["hello"].state == int(S.FAULT), f"HELLO_REPLY.state {S(out['hello'].state).name}"
    assert "FAULT with a cause latched" in spec_hello_table()["BOOT"][0], "SPEC's table no longer gives this case"
    changes = [a.message for a in host.events if a.message.NAME == "STATE_CHANGED" and a.t_s > out["t_hello"]]
    assert [(c.old_state, c.new_state, c.cause_msg_id, c.fault_code) for c in changes] == [
        (int(S.BOOT), int(S.IDLE), M.Hello.ID, 0), (int(S.IDLE), int(S.FAULT), 0, glitch)]
    assert changes[0].device_time_us == changes[1].device_time_us
    assert (out["status"].state, out["status"].fault_code) == (int(S.FAULT), glitch)
    # no command leaves FAULT while the cause is latched
    for key in ("home", "move", "arm"):
        assert (out[key].error_code, out[key].detail) == (int(ErrorCode.BAD_STATE), int(S.FAULT)), out[key].to_dict()
    assert out["abort"].NAME == "ACK"
    assert out["reset_wrong"].NAME == "NAK" and out["reset_wrong"].error_code == int(ErrorCode.FAULT_ACTIVE)
    assert out["hello2"].state == int(S.FAULT)
    assert (out["held"].state, out["held"].fault_code) == (int(S.FAULT), glitch) and not out["moving"]
    # the glitch is gone (1 ms): RESET_FAULT clears it, and the axis can be homed again
    assert out["reset"].NAME == "ACK"
    assert (out["cleared"].state, out["cleared"].fault_code) == (int(S.IDLE), 0)
    assert out["home_after"].NAME == "ACK" and out["home_done"].ok == 1


def test_a_motor_stall_injected_in_boot_waits_for_the_first_motion(tmp_path: Path) -> None:
    """What the firmware does (not a SPEC promise): with nothing moving, an injected MOTOR_STALL is pending.

    The first session opens in IDLE with no fault; its first motion (HOME) stalls and latches MOTOR_STALL;
    a HELLO after that keeps FAULT.
    """
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=48, data_dir=tmp_path, event_log=None)
    gantry.inject("MOTOR_STALL")
    host = LinkClient(env, ep)
    out: dict = {}

    def script():
        out["hello"] = yield host.request(hello(session_id=0x57A1))
        out["status"] = yield host.request(M.GetStatus())
        done = host.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["home"] = yield host.request(M.Home())
        out["done"] = yield done
        yield env.timeout(0.2)
        out["faulted"] = yield host.request(M.GetStatus())
        host2, reply = new_host(env, ep, host, 0x57A2)
        out["hello2"] = yield reply

    run(env, script, out)
    assert out["hello"].state == int(S.IDLE)
    assert (out["status"].state, out["status"].fault_code) == (int(S.IDLE), 0)
    assert out["home"].NAME == "ACK" and out["done"].ok == 0
    assert [m.fault_code for m in host.of("FAULT")] == [int(FaultCode.MOTOR_STALL)]
    assert (out["faulted"].state, out["faulted"].fault_code) == (int(S.FAULT), int(FaultCode.MOTOR_STALL))
    assert out["hello2"].state == spec_reply_state("FAULT")
