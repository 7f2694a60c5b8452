"""The agent commands: ``testbed node``, ``controller``, ``intent submit``, ``status``, ``broker``
(the agent layer itself is :mod:`testbed.agent`)."""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
import time
import uuid

from ..agent import messages as M
from ..agent import topics as T
from ..core.checks import SNR_DB, THREADS, number

TIMEOUT = number(float, lo=0.1, hi=3600.0)    # seconds to wait for a reply

log = logging.getLogger(__name__)


def _auth_args(p, user_default: str | None) -> None:
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port (TLS)")
    p.add_argument("--username", default=user_default,
                   help=f"MQTT user name (default: {user_default or 'the node id'})")
    p.add_argument("--password-file", help="file holding the MQTT password (or set $TESTBED_MQTT_PASSWORD)")
    p.add_argument("--ca-file", help="CA certificate for mqtts:// brokers")


def add_parsers(sub, common) -> None:
    n = sub.add_parser("node", parents=[common], help="run an edge node: jobs from the controller, QoS reports back")
    _auth_args(n, None)
    n.add_argument("--id", required=True, help="node id (also its MQTT user name and topic level)")
    n.add_argument("--role", default="txrx", choices=M.ROLES,
                   help="txrx: runs whole links; tx/rx: one end of a link with a peer node (default %(default)s)")
    n.add_argument("--radio", default="loopback", help="'loopback' or firmware_configs/<radio>.yaml")
    n.add_argument("--state-dir", help="outbox and received models (default ~/.cache/testbed/node-<id>)")
    n.add_argument("--models-dir", help="models installed on this node (default: the shipped models/)")
    n.add_argument("--channel-snr", help="loopback: channel SNR schedule, e.g. 20 or 20,5@30 (5 dB from image 30)")
    n.add_argument("--threads", type=number(int, lo=THREADS[0], hi=THREADS[1]), default=1, help="onnxruntime threads (default %(default)s)")
    n.set_defaults(func=cmd_node)

    c = sub.add_parser("controller", parents=[common], help="run the agent controller")
    _auth_args(c, "controller")
    c.add_argument("--out", help="run folder for qos.csv, decisions.jsonl, summary.json (default runs/controller-<time>)")
    c.add_argument("--models-dir", help="model registry (default: the shipped models/)")
    c.add_argument("--assume-snr-db", type=number(float, lo=SNR_DB[0], hi=SNR_DB[1]), default=10.0,
                   help="a link's SNR before any measurement (default %(default)s)")
    c.add_argument("--margin-db", type=number(float, lo=0.0, hi=50.0), default=0.5, help="PSNR margin over the target (default %(default)s)")
    c.add_argument("--offline-grace", type=number(float, lo=0.0, hi=86400.0), default=30.0, metavar="S",
                   help="a node offline this long mid-job: its link fails (default %(default)s s)")
    c.set_defaults(func=cmd_controller)

    i = sub.add_parser("intent", help="submit, cancel and list intents")
    isub = i.add_subparsers(dest="what", required=True, metavar="{submit,cancel,list}")
    s = isub.add_parser("submit", parents=[common], help="submit an intent file (YAML/JSON)")
    s.add_argument("file", help="intent file (keys: intent_id, images, qos, cbr_max, links, ...)")
    _auth_args(s, "operator")
    s.add_argument("--wait", action="store_true", help="follow the intent until its links finish")
    s.add_argument("--timeout", type=TIMEOUT, default=10.0, help="seconds to wait for the reply (default %(default)s)")
    s.set_defaults(func=cmd_intent_submit)
    ic = isub.add_parser("cancel", parents=[common], help="cancel an intent (queued: dropped; running: jobs stopped)")
    ic.add_argument("intent_id")
    ic.add_argument("--reason", default="", help="recorded in the decision log")
    _auth_args(ic, "operator")
    ic.add_argument("--timeout", type=TIMEOUT, default=10.0, help="seconds to wait for the reply (default %(default)s)")
    ic.set_defaults(func=cmd_intent_cancel)
    il = isub.add_parser("list", parents=[common], help="the controller's intents: state, links, priority")
    _auth_args(il, "operator")
    il.add_argument("--timeout", type=TIMEOUT, default=10.0, help="seconds to wait for the reply (default %(default)s)")
    il.set_defaults(func=cmd_intent_list)

    st = sub.add_parser("status", parents=[common], help="live view of nodes, links and QoS")
    _auth_args(st, "operator")
    st.add_argument("--once", action="store_true", help="print once and exit")
    st.add_argument("--every", type=number(float, lo=0.05, hi=3600.0), default=1.0, help="refresh period in seconds (default %(default)s)")
    st.set_defaults(func=cmd_status)

    b = sub.add_parser("broker", help="mosquitto with password authentication and per-node ACLs")
    bsub = b.add_subparsers(dest="what", required=True, metavar="{init,run}")
    bi = bsub.add_parser("init", parents=[common], help="write mosquitto.conf, passwd, acl and password files")
    bi.add_argument("dir")
    bi.add_argument("--nodes", required=True, help="comma-separated node ids")
    bi.add_argument("--port", type=number(int, lo=1, hi=65535), default=1883, help="1..65535 (default %(default)s)")
    bi.add_argument("--force", action="store_true",
                    help="write over a folder that already holds a broker config (new passwords for every user)")
    bi.add_argument("--bind", default="127.0.0.1", help="listen address (default %(default)s)")
    bi.add_argument("--autosave-s", type=number(int, lo=1, hi=86400), default=None,
                    help="seconds between the broker's saves of its state (default 60; each save stalls it briefly)")
    bi.add_argument("--certfile", help="TLS: the broker's certificate (PEM); clients then use mqtts://")
    bi.add_argument("--keyfile", help="TLS: the broker's private key (PEM)")
    bi.add_argument("--cafile", help="TLS: CA to verify client certificates (optional)")
    bi.set_defaults(func=cmd_broker_init)
    br = bsub.add_parser("run", parents=[common], help="run mosquitto with the config of `broker init`")
    br.add_argument("dir")
    br.set_defaults(func=cmd_broker_run)


def _password(a):
    from ..agent.mqttlink import read_password

    return read_password(a.password_file)


def _wait_for_ctrl_c(status_line, fatal=lambda: None) -> str | None:
    """Print ``status_line()`` now and then until Ctrl-C / SIGTERM, or until ``fatal()`` says why
    the process cannot go on (returned)."""
    stop = threading.Event()
    prev = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tty = sys.stderr.isatty()
    last, every, t_next = None, (2.0 if tty else 10.0), time.monotonic()
    try:
        while not stop.wait(0.2):
            why = fatal()
            if why:
                return why
            if time.monotonic() < t_next:
                continue
            t_next = time.monotonic() + every
            line = status_line()
            if tty:
                print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
            elif line != last:          # a log file: one line per change
                print(time.strftime("%H:%M:%S ") + line, file=sys.stderr, flush=True)
            last = line
    finally:
        signal.signal(signal.SIGINT, prev)
        if sys.stderr.isatty():
            print(file=sys.stderr)
    return None


def cmd_node(a) -> int:
    from ..agent.node import Node, NodeOptions

    node = Node(NodeOptions(broker=a.broker, node_id=a.id, role=a.role, radio=a.radio, state_dir=a.state_dir,
                            username=a.username, password=_password(a), ca_file=a.ca_file,
                            channel_snr=a.channel_snr, threads=a.threads, models_dir=a.models_dir))
    node.start(wait_s=None)
    print(f"node {a.id} ({a.role}, {node.radio_cfg.kind}) -> {a.broker}; models {', '.join(node.models)}; "
          f"Ctrl-C stops", file=sys.stderr)

    def line():
        snr = f"{node.last_snr:.1f} dB" if node.last_snr is not None else "-"
        return (f"node {a.id}: {'connected' if node.link.connected.is_set() else 'DISCONNECTED'}, "
                f"jobs {','.join(node.running) or '-'}, images {node.images_sent}, SNR est {snr}, "
                f"unacked reports {len(node.outbox)}, rejected msgs {node.link.rejected}")
    try:
        why = _wait_for_ctrl_c(line, lambda: node.fatal)
    finally:
        node.stop()
    if why:
        print(f"testbed node: error: {why}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps({"node": a.id, "images_sent": node.images_sent, "unacked_reports": len(node.outbox)}))
    return 0


def cmd_controller(a) -> int:
    from ..agent.controller import Controller, ControllerOptions

    ctl = Controller(ControllerOptions(broker=a.broker, out=a.out, models_dir=a.models_dir, username=a.username,
                                       password=_password(a), ca_file=a.ca_file, assume_snr_db=a.assume_snr_db,
                                       margin_db=a.margin_db, offline_grace_s=a.offline_grace))
    import gc

    from ..core.gcpace import pace

    gc.freeze()    # start-up objects leave the collector's view: shorter GC pauses (latency)
    pace()         # and so do the survivors of each full collection (testbed/core/gcpace.py)
    # the MQTT threads make several socket calls per message and wait for the GIL after each;
    # Python's default 5 ms switch interval made that wait the largest cost under load
    sys.setswitchinterval(0.0005)
    ctl.start(wait_s=None)
    print(f"controller -> {a.broker}; models {', '.join(ctl.model_dirs)}; run folder {ctl.out}; Ctrl-C stops",
          file=sys.stderr)

    def line():
        s = ctl.status()
        online = sum(n["online"] for n in s.nodes)
        active = sum(lk["status"] in ("assigned", "running") for lk in s.links)
        return (f"controller: {online}/{len(s.nodes)} nodes online, {active} active link(s), "
                f"{s.reports} QoS reports, {s.rejected} rejected")
    try:
        why = _wait_for_ctrl_c(line, lambda: ctl.fatal)
    finally:
        ctl.stop()
    if why:
        print(f"testbed controller: error: {why}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(dataclasses.asdict(ctl.status())))
    return 0


def _operator(a):
    from ..agent.mqttlink import MqttLink

    client = f"{a.username}-{uuid.uuid4().hex[:8]}"
    link = MqttLink(client, a.broker, username=a.username, password=_password(a), ca_file=a.ca_file)
    link.subscribe_replies(T.reply(a.username) + f"/{client}", (M.IntentReply, M.ControllerStatus))
    link.start()
    return link, T.reply(a.username) + f"/{client}"


def format_status(s: M.ControllerStatus) -> str:
    out = [f"{'node':<12} {'online':<6} {'role':<5} {'radio':<9} {'SNR dB':>6}  jobs"]
    for n in s.nodes:
        snr = f"{n['snr_db']:.1f}" if n.get("snr_db") is not None else "-"
        out.append(f"{n['node_id']:<12} {'yes' if n['online'] else 'no':<6} {n['role']:<5} {n['radio']:<9} "
                   f"{snr:>6}  {','.join(n['jobs']) or '-'}")
    out.append("")
    out.append(f"{'link':<16} {'node':<10} {'status':<9} {'model':<9} {'CBR':>7} {'SNR dB':>6} {'images':>6} "
               f"{'met':>5} {'target':>6}")
    for lk in s.links:
        snr = f"{lk['snr_db']:.1f}" if lk.get("snr_db") is not None else "-"
        tgt = f"{lk['psnr_target_db']:g}" if lk.get("psnr_target_db") is not None else "-"
        out.append(f"{lk['link_id']:<16} {lk['node']:<10} {lk['status']:<9} {lk['model']:<9} {lk['cbr']:>7.4f} "
                   f"{snr:>6} {lk['reports']:>6} {lk['met']:>5} {tgt:>6}")
    out.append(f"\n{s.reports} QoS reports, {s.rejected} rejected messages")
    return "\n".join(out)


def cmd_intent_submit(a) -> int:
    from ..agent.controller import load_intent

    intent = load_intent(a.file)
    link, rt = _operator(a)
    try:
        reply = link.request(T.intents(), intent, rt, M.IntentReply, timeout_s=a.timeout)
        if not reply.accepted:
            print(f"intent {intent.intent_id} refused: {reply.reason}", file=sys.stderr)
            if a.json:
                print(json.dumps(dataclasses.asdict(reply)))
            return 3
        print(f"intent {intent.intent_id} accepted: {reply.reason}; links {', '.join(reply.links)}", file=sys.stderr)
        status, mine = None, []
        while a.wait:
            status = link.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=a.timeout)
            it = next((x for x in status.intents if x["intent_id"] == intent.intent_id), None)
            ids = it["links"] if it is not None else reply.links
            mine = [lk for lk in status.links if lk["link_id"] in ids]
            if it is not None and it["state"] == "queued":
                print(f"\r{intent.intent_id}: queued (nodes busy)\033[K", end="", file=sys.stderr)
            else:
                print(f"\r{intent.intent_id}: {sum(lk['reports'] for lk in mine)} image(s) reported, "
                      f"{sum(lk['met'] for lk in mine)} met the target; links "
                      f"{', '.join(lk['link_id'] + ' ' + lk['status'] for lk in mine)}\033[K", end="", file=sys.stderr)
                if mine and all(lk["status"] in ("done", "failed", "cancelled") for lk in mine):
                    print(file=sys.stderr)
                    break
            time.sleep(1.0)
        if a.json:
            out = dataclasses.asdict(reply)
            if status is not None:
                out["links_status"] = mine
            print(json.dumps(out))
        bad = [lk["link_id"] + " " + lk["status"] for lk in mine if lk["status"] in ("failed", "cancelled")]
        if bad:
            print(f"intent {intent.intent_id}: {', '.join(bad)}", file=sys.stderr)
            return 4
        return 0
    finally:
        link.stop()


def cmd_intent_cancel(a) -> int:
    link, rt = _operator(a)
    try:
        reply = link.request(T.intents(), M.IntentCancel(a.intent_id, a.reason), rt, M.IntentReply,
                             timeout_s=a.timeout)
    finally:
        link.stop()
    if a.json:
        print(json.dumps(dataclasses.asdict(reply)))
    print(f"intent {a.intent_id}: {reply.reason}", file=sys.stderr)
    return 0 if reply.accepted else 3


def cmd_intent_list(a) -> int:
    link, rt = _operator(a)
    try:
        s = link.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=a.timeout)
    finally:
        link.stop()
    if a.json:
        print(json.dumps(s.intents))
        return 0
    print(f"{'intent':<24} {'state':<10} {'priority':>8}  links")
    for it in s.intents:
        print(f"{it['intent_id']:<24} {it['state']:<10} {it['priority']:>8}  {', '.join(it['links']) or '-'}")
    return 0


def cmd_status(a) -> int:
    link, rt = _operator(a)
    try:
        while True:
            s = link.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=10)
            if a.json:
                print(json.dumps(dataclasses.asdict(s)))
            else:
                if not a.once and sys.stdout.isatty():
                    print("\033[H\033[J", end="")
                print(format_status(s), flush=True)
            if a.once:
                return 0
            time.sleep(a.every)
    except KeyboardInterrupt:
        return 0
    finally:
        link.stop()


def cmd_broker_init(a) -> int:
    from ..agent.broker import existing_users, init_broker_dir

    nodes = [n.strip() for n in a.nodes.split(",")]
    tls = {"certfile": a.certfile, "keyfile": a.keyfile, "cafile": a.cafile} \
        if (a.certfile or a.keyfile or a.cafile) else None
    replaced = existing_users(a.dir) if a.force else []
    init_broker_dir(a.dir, nodes, port=a.port, bind=a.bind, tls=tls, force=a.force,
                    **({} if a.autosave_s is None else {"autosave_s": a.autosave_s}))
    if replaced:
        print(f"{a.dir}: replaced the passwords of {', '.join(replaced)} (running clients with the old ones are "
              f"refused at their next connection)", file=sys.stderr)
    print(f"{a.dir}: mosquitto.conf (port {a.port}), passwd, acl, and <user>.password for controller, operator, "
          f"{', '.join(nodes)}\nrun: testbed broker run {a.dir}", file=sys.stderr)
    return 0


def cmd_broker_run(a) -> int:
    import os
    from pathlib import Path

    from ..agent.broker import mosquitto_binary

    conf = Path(a.dir) / "mosquitto.conf"
    if not conf.exists():
        raise FileNotFoundError(f"{conf}: not found (run `testbed broker init {a.dir} --nodes ...` first)")
    os.execv(mosquitto_binary(), [mosquitto_binary(), "-c", str(conf)])
    return 0
