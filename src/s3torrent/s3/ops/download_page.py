"""The download page: `GET /bucket/key?torrent&format=html`, WebTorrent in the browser.

The page fetches the object's `.torrent` (same origin, `?torrent`), and downloads it with
WebTorrent from the torrent's web seed, our WebSocket tracker and the other browsers on the
page, showing progress, peers and where the bytes came from; then it offers the file to save
and exposes its SHA-256 (computed in the browser) for tests. WebTorrent's browser bundle is
loaded from `torrent.webtorrent_script_url`: no third-party code lives in this repository.
"""

from __future__ import annotations

import html
import json

from s3torrent.torrent.catalog import TorrentInfo

# The page's own script: it reads its configuration from the JSON block, never from markup.
_SCRIPT = """
const config = JSON.parse(document.getElementById("s3t-config").textContent);
const state = window.s3torrent = {
  done: false, error: null, progress: 0, peers: 0,
  fromPeers: 0, fromOrigin: 0, sha256: null, seconds: null,
};
const $ = (id) => document.getElementById(id);
const units = ["B", "KiB", "MiB", "GiB", "TiB"];
function human(n) {
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function show(torrent) {
  state.progress = torrent.progress;
  state.peers = torrent.wires.filter((w) => w.type !== "webSeed").length;
  $("progress").value = torrent.progress;
  $("percent").textContent = (torrent.progress * 100).toFixed(1) + " %";
  $("peers").textContent = String(state.peers);
  $("from-peers").textContent = human(state.fromPeers);
  $("from-origin").textContent = human(state.fromOrigin);
  $("speed").textContent = human(Math.round(torrent.downloadSpeed)) + "/s";
}
function fail(message) {
  state.error = String(message);
  $("status").textContent = "Error: " + state.error;
}
async function sha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
async function main() {
  if (!config.webtorrent) {
    fail("this server has no WebTorrent bundle configured (torrent.webtorrent_script_url)");
    return;
  }
  const started = performance.now();
  const { default: WebTorrent } = await import(config.webtorrent);
  const response = await fetch(config.torrent);
  if (!response.ok) { fail("the torrent is not available (" + response.status + ")"); return; }
  const torrentFile = new Uint8Array(await response.arrayBuffer());
  const rtc = config.rtcConfig;
  const client = new WebTorrent(rtc ? { tracker: { rtcConfig: rtc } } : {});
  client.on("error", fail);
  $("status").textContent = "Connecting to the swarm...";
  // Sequential (WebTorrent's default): its rarest-first costs time quadratic in the piece
  // count. Browsers starting together still get different pieces from the origin, whose web
  // seed sends each piece once while others download and answers 503 for the rest.
  const torrent = client.add(torrentFile, { strategy: "sequential" }, () => {
    $("status").textContent = "Downloading...";
  });
  const timer = setInterval(() => show(torrent), 250);
  // Counted per wire as pieces arrive, from the first wire on: a wire that closes keeps its
  // share.
  torrent.on("wire", (wire) => {
    wire.on("download", (n) => {
      if (wire.type === "webSeed") state.fromOrigin += n; else state.fromPeers += n;
    });
  });
  const warnings = [];
  torrent.on("warning", (w) => {
    const text = String((w && w.message) || w);
    // Browsers speak only to WebSocket trackers: the HTTP and UDP ones are for other clients.
    if (text.startsWith("Unsupported tracker protocol")) return;
    if (!warnings.includes(text)) warnings.push(text);
    $("warning").textContent = warnings.slice(-3).join("; ");
  });
  // WebTorrent leaves a web seed request that failed (a 503 while the other browsers have
  // that piece, a 403 after a revocation) outstanding forever, and the piece with it: when
  // nothing arrives for a while, replace the web seed, backing off while that does not help.
  let last = -1;
  let quiet = 0;
  let patience = 3;
  const watchdog = setInterval(() => {
    if (!torrent.ready || torrent.done) return;
    if (torrent.received !== last) { last = torrent.received; quiet = 0; patience = 3; return; }
    quiet += 1;
    if (quiet < patience) return;
    quiet = 0;
    patience = Math.min(patience * 2, 30);
    for (const url of torrent.urlList) {
      torrent.removePeer(url);
      torrent.addWebSeed(url);
    }
  }, 1000);
  torrent.on("done", async () => {
    clearInterval(timer);
    clearInterval(watchdog);
    show(torrent);
    state.seconds = (performance.now() - started) / 1000;
    $("status").textContent = "Done in " + state.seconds.toFixed(1) + " s. Checking...";
    const blob = await torrent.files[0].blob();
    const link = $("save");
    link.href = URL.createObjectURL(blob);
    link.download = torrent.files[0].name;
    link.hidden = false;
    state.sha256 = await sha256(blob);
    $("sha256").textContent = state.sha256;
    $("status").textContent = "Done in " + state.seconds.toFixed(1) + " s; still sharing.";
    state.done = true;
  });
}
main().catch(fail);
"""

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.3rem; word-break: break-all; }
progress { width: 100%; height: 1.2rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th { text-align: left; font-weight: normal; color: #555; padding-right: 1.5rem; }
td { font-variant-numeric: tabular-nums; }
#sha256 { font-family: monospace; font-size: 0.8rem; word-break: break-all; }
#warning { color: #a60; font-size: 0.85rem; }
a#save { display: inline-block; padding: 0.4rem 1rem; background: #246; color: #fff;
         border-radius: 4px; text-decoration: none; }
"""


def page_config(info: TorrentInfo, webtorrent_url: str, ice_servers: list[str] | None) -> str:
    """The page's JSON configuration, safe inside a <script> element."""
    config: dict[str, object] = {
        # Relative: the torrent is fetched from wherever the browser reached this page.
        "torrent": "?torrent",
        "webtorrent": webtorrent_url,
        "name": info.name,
        "length": info.hashes.length,
    }
    if ice_servers is not None:
        config["rtcConfig"] = {"iceServers": [{"urls": url} for url in ice_servers]}
    # "<" escaped so no value can end the script element early.
    return json.dumps(config).replace("<", "\\u003c")


def download_page(info: TorrentInfo, webtorrent_url: str, ice_servers: list[str] | None) -> str:
    """The HTML of the download page of one object version's torrent."""
    name = html.escape(info.name)
    config = page_config(info, webtorrent_url, ice_servers)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{name} - download with WebTorrent</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{name}</h1>
<p>{info.hashes.length:,} bytes, shared by the browsers downloading it with the server's
web seed as the fallback.</p>
<progress id="progress" max="1" value="0"></progress>
<div id="percent">0 %</div>
<table>
<tr><th>Peers (other browsers)</th><td id="peers">0</td></tr>
<tr><th>Received from peers</th><td id="from-peers">0 B</td></tr>
<tr><th>Received from the origin (web seed)</th><td id="from-origin">0 B</td></tr>
<tr><th>Speed</th><td id="speed">-</td></tr>
</table>
<p id="status">Starting...</p>
<p><a id="save" hidden>Save the file</a></p>
<p>SHA-256: <span id="sha256">-</span></p>
<p id="warning"></p>
<script type="application/json" id="s3t-config">{config}</script>
<script type="module">{_SCRIPT}</script>
</body>
</html>
"""


def download_page_answer(
    info: TorrentInfo, webtorrent_url: str, ice_servers: list[str] | None
) -> tuple[bytes, dict[str, str]]:
    """The page's body and its headers."""
    body = download_page(info, webtorrent_url, ice_servers).encode("utf-8")
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        # The page is a view of the current version: never reuse it for the next one.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return body, headers
