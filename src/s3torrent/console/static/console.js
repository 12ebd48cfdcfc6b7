// The console's pages: each fills <main> from signed S3 and admin API calls. The server
// served an empty shell; everything shown here is what the API let this user see.

import { deriveSession, encodePath, signedFetch } from "./sigv4.js";
import { lineChart } from "./plot.js";

const STORE = "s3torrent.console";
const SIGNED_UPLOAD_MAX = 64 * 1024 * 1024;
// The usage report's types (metering/usage.py), as the report names them.
const USAGE_TYPES = [
  ["DataTransfer-Out-Bytes", "bytes out"],
  ["DataTransfer-In-Bytes", "bytes in"],
  ["TimedStorage-ByteHrs", "storage (byte-hours)"],
  ["Requests-Tier1", "requests, tier 1 (PUT, LIST, ...)"],
  ["Requests-Tier2", "requests, tier 2 (GET, ...)"],
];
const body = document.body;
const PREFIX = body.dataset.prefix;
const app = document.getElementById("app");
const params = new URLSearchParams(location.search);

// ------------------------------------------------------------------ small DOM and API bits

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function show(title, ...children) {
  app.replaceChildren(h("h1", {}, title), ...children);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}

function page(path, query = {}) {
  const q = new URLSearchParams(query).toString();
  return `${PREFIX}${path}${q ? "?" + q : ""}`;
}

// The tab's session (the day's signing key) between pages. sessionStorage is readable by
// any page of this origin in this tab, objects included, so it holds the session only as
// AES-GCM ciphertext under the wrap key the server wrote into this page (pages.py): a
// page that was not navigated to as a document, such as an object's script fetching a
// console page, is served without it.
const WRAP = body.dataset.wrap || null;
body.removeAttribute("data-wrap");
let current = null;

function session() {
  return current;
}

function b64urlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

function bytesB64(buf) {
  return btoa(String.fromCharCode(...new Uint8Array(buf)));
}

async function wrapKey() {
  if (!WRAP) {
    throw new Error("this page was not loaded as a document with Fetch Metadata (Sec-Fetch-Dest): use a current browser");
  }
  return crypto.subtle.importKey("raw", b64urlBytes(WRAP), "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function saveSession(s) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = new TextEncoder().encode(JSON.stringify(s));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await wrapKey(), plain);
  sessionStorage.setItem(STORE, JSON.stringify({ iv: bytesB64(iv), sealed: bytesB64(sealed) }));
  current = s;
}

async function loadSession() {
  const raw = sessionStorage.getItem(STORE);
  if (!raw || !WRAP) return null;
  try {
    const { iv, sealed } = JSON.parse(raw);
    const unb64 = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: unb64(iv) }, await wrapKey(), unb64(sealed));
    return JSON.parse(new TextDecoder().decode(plain));
  } catch {
    // Another wrap key (the cookie was cleared) or an old plain session: sign in again.
    sessionStorage.removeItem(STORE);
    return null;
  }
}

function dropSession() {
  sessionStorage.removeItem(STORE);
  current = null;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

// One signed call; the answer's XML or JSON error becomes an ApiError.
async function call(method, path, options = {}) {
  const resp = await signedFetch(session(), method, path, options);
  if (resp.ok) return resp;
  const text = await resp.text();
  let code = String(resp.status);
  let message = resp.statusText;
  if (text.startsWith("{")) {
    const err = JSON.parse(text).error || {};
    code = err.code || code;
    message = err.message || message;
  } else if (text.includes("<Code>")) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    code = doc.querySelector("Code")?.textContent || code;
    message = doc.querySelector("Message")?.textContent || message;
  }
  const badKeys = code === "InvalidAccessKeyId" || code === "SignatureDoesNotMatch";
  if (resp.status === 403 && badKeys && body.dataset.page !== "signin") {
    // Keys refused mid-session (disabled or rotated): nothing more will work with them.
    signOut(`signed out: ${code}`);
  }
  throw new ApiError(resp.status, code, message);
}

async function xml(method, path, options) {
  const resp = await call(method, path, options);
  return new DOMParser().parseFromString(await resp.text(), "application/xml");
}

async function json(method, path, options) {
  return (await call(method, path, options)).json();
}

function texts(node, selector) {
  return Array.from(node.querySelectorAll(selector), (n) => n.textContent);
}

function failure(err) {
  return h("p", { class: "error", role: "alert" }, err.message || String(err));
}

function signOut(reason) {
  dropSession();
  location.assign(page("/", reason ? { reason } : {}));
}

// The clipboard API needs a secure context (HTTPS or localhost); elsewhere the link is
// selected for the user to copy.
function copyButton(text, target) {
  const copy = async (event) => {
    const button = event.currentTarget;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(target);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: copy it";
    }
  };
  return h("button", { type: "button", onclick: copy }, "Copy");
}

// ------------------------------------------------------------------------------ pages

async function signinPage() {
  const reason = params.get("reason");
  const ak = h("input", { type: "text", id: "access-key", name: "access-key", autocomplete: "username", required: true });
  const sk = h("input", { type: "password", id: "secret-key", name: "secret-key", autocomplete: "current-password", required: true });
  const status = h("p", { id: "signin-status", role: "status" }, reason || "");
  const form = h(
    "form",
    { id: "signin" },
    h("label", {}, "Access key ", ak),
    h("label", {}, "Secret key ", sk),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.className = "";
    status.textContent = "Checking…";
    const s = await deriveSession(ak.value.trim(), sk.value, body.dataset.region);
    sk.value = "";
    try {
      current = s;
      await call("GET", "/"); // ListBuckets: the keys are good if the API says so
      const info = await signedFetch(s, "GET", "/_admin/info");
      await saveSession({ ...s, admin: info.ok });
      location.assign(page("/buckets"));
    } catch (err) {
      dropSession();
      status.className = "error";
      status.textContent = `Refused: ${err.message}`;
    }
  });
  show(
    "Sign in",
    h("p", { class: "muted" }, "Root or any user's keys. The secret stays in this tab: it signs each request here and is never sent."),
    form,
    status,
  );
}

async function bucketsPage() {
  const doc = await xml("GET", "/");
  const names = texts(doc, "Bucket > Name");
  const dates = texts(doc, "Bucket > CreationDate");
  const name = h("input", { type: "text", id: "new-bucket", placeholder: "new bucket name", required: true });
  const status = h("p", { role: "status" });
  const form = h("form", { id: "create-bucket" }, name, h("button", { type: "submit" }, "Create bucket"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("PUT", `/${name.value.trim()}`);
      location.reload();
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  });
  const rows = names.map((n, i) =>
    h("tr", {}, h("td", {}, h("a", { href: page("/objects", { bucket: n }) }, n)), h("td", {}, dates[i] || "")),
  );
  show(
    "Buckets",
    names.length ? h("table", { id: "buckets" }, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Created")), rows) : h("p", { class: "muted" }, "No buckets yet."),
    form,
    status,
  );
}

async function objectsPage() {
  const bucket = params.get("bucket") || "";
  const prefix = params.get("prefix") || "";
  const token = params.get("token");
  // encoding-type=url: a key may hold characters XML 1.0 cannot carry (S3 writes them as
  // references like &#1;, which DOMParser refuses); keys and prefixes come back encoded.
  const query = [["list-type", "2"], ["delimiter", "/"], ["prefix", prefix], ["encoding-type", "url"]];
  if (token) query.push(["continuation-token", token]);
  const doc = await xml("GET", `/${bucket}`, { query });
  const next = doc.querySelector("NextContinuationToken")?.textContent;
  const crumbs = [h("a", { href: page("/objects", { bucket }) }, bucket)];
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += part + "/";
    crumbs.push(" / ", h("a", { href: page("/objects", { bucket, prefix: acc }) }, part));
  }
  const rows = [];
  for (const p of texts(doc, "CommonPrefixes > Prefix").map(decodeURIComponent)) {
    rows.push(h("tr", {}, h("td", {}, h("a", { href: page("/objects", { bucket, prefix: p }) }, p.slice(prefix.length))), h("td", {}, "folder")));
  }
  for (const c of doc.querySelectorAll("Contents")) {
    const key = decodeURIComponent(c.querySelector("Key").textContent);
    const size = c.querySelector("Size").textContent;
    rows.push(h("tr", {}, h("td", {}, h("a", { href: page("/object", { bucket, key }) }, key.slice(prefix.length))), h("td", { class: "num" }, bytes(size))));
  }
  const file = h("input", { type: "file", id: "upload-file", required: true });
  const status = h("p", { id: "upload-status", role: "status" });
  const form = h("form", { id: "upload" }, file, h("button", { type: "submit" }, "Upload"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = file.files[0];
    if (!f) return;
    status.textContent = `Uploading ${f.name}…`;
    try {
      const headers = f.type ? { "content-type": f.type } : {};
      // Small files are hashed into the signature; a large one is not read into the page
      // (the browser streams it), at the price of an unsigned payload, as SDKs allow.
      const signBody = f.size <= SIGNED_UPLOAD_MAX;
      const data = signBody ? new Uint8Array(await f.arrayBuffer()) : f;
      await call("PUT", `/${bucket}/${prefix}${f.name}`, { body: data, headers, unsignedPayload: !signBody });
      location.reload();
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  });
  show(
    `Objects in ${bucket}`,
    h("p", {}, ...crumbs),
    rows.length ? h("table", { id: "objects" }, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Size")), rows) : h("p", { class: "muted" }, "Nothing here yet."),
    next ? h("p", {}, h("a", { id: "next-page", href: page("/objects", { bucket, prefix, token: next }) }, "Next page →")) : null,
    h("h2", {}, "Upload a file here"),
    form,
    status,
  );
}

function isPublic(aclDoc) {
  return Array.from(aclDoc.querySelectorAll("Grant")).some(
    (g) => (g.querySelector("URI")?.textContent || "").endsWith("/global/AllUsers") && ["READ", "FULL_CONTROL"].includes(g.querySelector("Permission")?.textContent),
  );
}

async function objectPage() {
  const bucket = params.get("bucket") || "";
  const key = params.get("key") || "";
  const path = `/${bucket}/${key}`;
  const head = await call("HEAD", path);
  // Reading the ACL takes s3:GetObjectAcl: a reader without it still gets the object page.
  let pub = null;
  try {
    pub = isPublic(await xml("GET", path, { query: [["acl", ""]] }));
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
  }
  const status = h("p", { role: "status" });
  const setAcl = (acl) => async () => {
    try {
      await call("PUT", path, { query: [["acl", ""]], headers: { "x-amz-acl": acl } });
      location.reload();
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  };
  const download = async () => {
    try {
      const blob = await (await call("GET", path)).blob();
      const a = h("a", { href: URL.createObjectURL(blob), download: key.split("/").pop() });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  };
  const torrentUrl = `${location.origin}${encodePath(path)}?torrent`;
  const parent = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const parts = [
    h("p", {}, h("a", { href: page("/objects", { bucket, prefix: parent }) }, `← ${bucket}/${parent}`)),
    h(
      "table",
      {},
      h("tr", {}, h("th", {}, "Size"), h("td", {}, bytes(head.headers.get("content-length") || 0))),
      h("tr", {}, h("th", {}, "Type"), h("td", {}, head.headers.get("content-type") || "")),
      h("tr", {}, h("th", {}, "ETag"), h("td", {}, head.headers.get("etag") || "")),
      h("tr", {}, h("th", {}, "Access"), h("td", {}, h("span", { id: "access", class: pub ? "badge public" : "badge" }, pub === null ? "unknown (no s3:GetObjectAcl)" : pub ? "public" : "private"))),
    ),
    h(
      "p",
      {},
      h("button", { type: "button", id: "download", onclick: download }, "Download"),
      " ",
      pub === null
        ? null
        : pub
          ? h("button", { type: "button", id: "make-private", onclick: setAcl("private") }, "Make private")
          : h("button", { type: "button", id: "make-public", onclick: setAcl("public-read") }, "Make public"),
    ),
    status,
  ];
  if (pub) {
    const torrentLink = h("a", { id: "torrent-link", href: torrentUrl }, h("code", { class: "link" }, torrentUrl));
    const magnet = h("p", { id: "magnet" }, h("span", { class: "muted" }, "Magnet link: waiting for the piece hashes…"));
    const swarm = h("div", { id: "swarm", class: "stats" });
    parts.push(
      h("h2", {}, "Torrent"),
      h("p", {}, "Torrent file: ", torrentLink, " ", copyButton(torrentUrl, torrentLink)),
      magnet,
      h("h2", {}, "Swarm"),
      swarm,
    );
    show(key, ...parts);
    await watchSwarm(bucket, key, magnet, swarm, torrentUrl);
    return;
  }
  show(key, ...parts, h("p", { class: "muted" }, "Make the object public to publish it as a torrent."));
}

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("b", { id }, value), label);
}

// The live swarm: admins see the tracker and seeder too; everyone sees metered bytes.
async function watchSwarm(bucket, key, magnetBox, box, torrentUrl) {
  const s = session();
  const tick = async () => {
    try {
      if (s.admin) {
        const t = await json("GET", "/_admin/torrent", { query: [["bucket", bucket], ["key", key]] });
        if (t.magnet && !document.getElementById("magnet-link")) {
          const link = h("code", { class: "link", id: "magnet-link" }, t.magnet);
          magnetBox.replaceChildren("Magnet link: ", link, " ", copyButton(t.magnet, link));
        }
        const w = await json("GET", "/_admin/torrent/swarm", { query: [["bucket", bucket], ["key", key]] });
        box.replaceChildren(
          stat("torrent state", w.state, "swarm-state"),
          stat("seeders (peers)", w.tracker.seeders, "swarm-seeders"),
          stat("leechers", w.tracker.leechers, "swarm-leechers"),
          stat("completed downloads", w.tracker.completed, "swarm-completed"),
          stat("origin seeder links", w.seeder.connections, "swarm-links"),
          stat("origin seeder sent", bytes(w.seeder.bytes_sent), "swarm-seeder-bytes"),
          stat("origin bytes (metered)", bytes(w.origin_bytes), "swarm-origin-bytes"),
          stat("peer bytes (metered)", bytes(w.peer_bytes), "swarm-peer-bytes"),
        );
        box.dataset.originBytes = String(w.origin_bytes + w.seeder.bytes_sent);
        box.dataset.peers = String(w.tracker.seeders + w.tracker.leechers);
      } else {
        const r = await json("GET", "/_admin/savings", { query: [["bucket", bucket], ["key", key]] });
        const o = r.objects.find((x) => x.key === key) || { origin_bytes: 0, offloaded_bytes: 0 };
        box.replaceChildren(
          stat("origin bytes (metered)", bytes(o.origin_bytes), "swarm-origin-bytes"),
          stat("peer bytes (metered)", bytes(o.offloaded_bytes), "swarm-peer-bytes"),
        );
        if (!document.getElementById("magnet-link")) {
          // A public object's magnet is public too: GetObjectTorrent's magnet form, unsigned.
          const m = await fetch(`${torrentUrl}&format=magnet`, { credentials: "omit" });
          if (m.ok) {
            const text = (await m.text()).trim();
            const link = h("code", { class: "link", id: "magnet-link" }, text);
            magnetBox.replaceChildren("Magnet link: ", link, " ", copyButton(text, link));
          }
        }
      }
    } catch (err) {
      box.replaceChildren(failure(err));
    }
  };
  await tick();
  setInterval(tick, 2000);
}

// The torrents peers are fetching from this node's seeder (/_seeder/stats is root only: it
// names private objects' torrents too).
async function torrentsPage() {
  const box = h("div", { id: "torrents-box" });
  const tick = async () => {
    try {
      const stats = await json("GET", "/_seeder/stats");
      const rows = Object.entries(stats.torrents).map(([hash, t]) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: page("/object", { bucket: t.bucket, key: t.key }) }, `${t.bucket}/${t.key}`)),
          h("td", {}, h("code", {}, hash.slice(0, 12) + "…")),
          h("td", { class: "num" }, t.connections),
          h("td", { class: "num" }, t.peers_seen),
          h("td", { class: "num" }, bytes(t.bytes_sent)),
          h("td", { class: "num" }, bytes(t.web_seed_bytes)),
        ),
      );
      box.replaceChildren(
        h("p", {}, `Seeder: ${stats.connections} peer links, ${bytes(stats.bytes_sent)} sent in all.`),
        rows.length
          ? h("table", { id: "torrents" }, h("tr", {}, ...["Object", "Info-hash", "Links now", "Peers seen", "Seeder sent", "Web seed sent"].map((t) => h("th", {}, t))), rows)
          : h("p", { class: "muted" }, "No peer has asked the seeder for a torrent yet."),
      );
    } catch (err) {
      box.replaceChildren(failure(err));
    }
  };
  show("Torrents", h("p", { class: "muted" }, "Torrents peers fetch from this node's seeder and web seed; open one for its swarm."), box);
  await tick();
  setInterval(tick, 3000);
}

async function reportsPage() {
  const savings = await json("GET", "/_admin/savings");
  const usage = await json("GET", "/_admin/usage", { query: [["by", "hour"]] });
  const rows = savings.objects.map((o) =>
    h("tr", {}, h("td", {}, `${o.bucket}/${o.key}`), h("td", { class: "num" }, bytes(o.origin_bytes)), h("td", { class: "num" }, bytes(o.offloaded_bytes)), h("td", { class: "num" }, `${(o.offload_ratio * 100).toFixed(1)}%`), h("td", { class: "num" }, `$${o.cost_avoided.toFixed(4)}`)),
  );
  // One usage type per bucket and hour, from the usage report's rows.
  const usageBox = h("div", { id: "usage-chart" });
  const usageType = h(
    "select",
    { id: "usage-type" },
    ...USAGE_TYPES.map(([value, label]) => h("option", { value }, label)),
  );
  const drawUsage = () => {
    const perBucket = new Map();
    for (const r of usage.rows.filter((x) => x.UsageType === usageType.value)) {
      const name = r.Resource || "(no bucket: ListBuckets)";
      const series = perBucket.get(name) || new Map();
      const t = Date.parse(r.StartTime);
      series.set(t, (series.get(t) || 0) + Number(r.UsageValue));
      perBucket.set(name, series);
    }
    const format = usageType.value.includes("Bytes") ? bytes : (v) => String(Math.round(v));
    usageBox.replaceChildren(
      lineChart(Array.from(perBucket, ([name, m]) => ({ name, points: Array.from(m) })), { format }),
    );
  };
  usageType.addEventListener("change", drawUsage);
  drawUsage();
  // Savings over time: the stored hourly counters (origin bytes to torrent clients, and what
  // the swarms reported downloading), summed over the buckets this user may report on.
  const savingsBox = h("div", { id: "savings-chart" });
  const drawSavings = (history) => {
    const origin = new Map();
    const peers = new Map();
    for (const p of history.periods) {
      const t = Date.parse(p.start);
      origin.set(t, (origin.get(t) || 0) + p.origin_bytes);
      peers.set(t, (peers.get(t) || 0) + p.offloaded_bytes);
    }
    savingsBox.replaceChildren(
      lineChart([{ name: "origin bytes to torrent clients", points: Array.from(origin) }, { name: "peer bytes (offloaded)", points: Array.from(peers) }], { format: bytes }),
    );
  };
  const history = () => json("GET", "/_admin/savings/history", { query: [["by", "hour"]] });
  drawSavings(await history());
  // Metering stores its counters every second: a download the user just watched shows here
  // within a few seconds (every 30 s until 2026-12-05, when the first draw could miss it).
  setInterval(async () => drawSavings(await history()), 5000);
  show(
    "Savings and usage",
    h("p", {}, `Offloaded ${bytes(savings.total_offloaded_bytes)}, origin ${bytes(savings.total_origin_bytes)}, cost avoided $${savings.total_cost_avoided.toFixed(4)} at $${savings.price_per_gb}/GB.`),
    h("h2", {}, "Savings per hour"),
    savingsBox,
    h("h2", {}, "Usage per bucket and hour"),
    h("p", {}, h("label", {}, "Show ", usageType)),
    usageBox,
    h("h2", {}, "Per object"),
    rows.length ? h("table", { id: "savings" }, h("tr", {}, ...["Object", "Origin", "Peers", "Offload", "Cost avoided"].map((t) => h("th", {}, t))), rows) : h("p", { class: "muted" }, "No object traffic recorded yet."),
  );
}

async function usersPage() {
  const { users } = await json("GET", "/_admin/users");
  const status = h("div", { id: "users-status", role: "status" });
  const act = (name, what, method = "POST") => async () => {
    if (method === "DELETE" && !confirm(`Remove user ${name}? Their keys stop working.`)) return;
    try {
      const suffix = what ? `/${what}` : "";
      const r = await json(method, `/_admin/users/${name}${suffix}`);
      if (r.secret_key) {
        status.replaceChildren(h("p", { class: "ok" }, `New keys of ${name} (shown once): `, h("code", {}, r.access_key), " ", h("code", { id: "new-secret" }, r.secret_key)));
      } else {
        location.reload();
      }
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  };
  const rows = users.map((u) =>
    h(
      "tr",
      { "data-user": u.name },
      h("td", {}, u.name),
      h("td", {}, h("code", {}, u.access_key)),
      h("td", {}, u.root ? "root" : u.admin ? "admin" : "user"),
      h("td", {}, u.disabled ? "disabled" : "active"),
      h(
        "td",
        {},
        u.root
          ? ""
          : [
              h("button", { type: "button", onclick: act(u.name, u.disabled ? "enable" : "disable") }, u.disabled ? "Enable" : "Disable"),
              " ",
              h("button", { type: "button", onclick: act(u.name, "rotate") }, "Rotate keys"),
              " ",
              h("button", { type: "button", onclick: act(u.name, "", "DELETE") }, "Remove"),
            ],
      ),
    ),
  );
  const name = h("input", { type: "text", id: "new-user", placeholder: "user name", required: true });
  const admin = h("input", { type: "checkbox", id: "new-user-admin" });
  const form = h("form", { id: "add-user" }, name, h("label", {}, admin, " admin"), h("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const payload = new TextEncoder().encode(JSON.stringify({ name: name.value.trim(), admin: admin.checked }));
      const r = await json("POST", "/_admin/users", { body: payload, headers: { "content-type": "application/json" } });
      status.replaceChildren(h("p", { class: "ok" }, `Created ${r.name} (the secret is shown once): `, h("code", {}, r.access_key), " ", h("code", { id: "new-secret" }, r.secret_key)));
    } catch (err) {
      status.replaceChildren(failure(err));
    }
  });
  show(
    "Users and keys",
    h("table", { id: "users" }, h("tr", {}, ...["Name", "Access key", "Role", "Status", ""].map((t) => h("th", {}, t))), rows),
    form,
    status,
  );
}

const PAGES = {
  signin: signinPage,
  buckets: bucketsPage,
  objects: objectsPage,
  object: objectPage,
  torrents: torrentsPage,
  reports: reportsPage,
  users: usersPage,
};

async function main() {
  const name = body.dataset.page;
  current = await loadSession();
  const s = session();
  if (name !== "signin") {
    if (!s) {
      location.replace(page("/", { reason: "Sign in first." }));
      return;
    }
    const nav = document.querySelector("header nav");
    nav.hidden = false;
    for (const a of nav.querySelectorAll("a")) {
      if (["users", "torrents"].includes(a.dataset.nav) && !s.admin) a.remove();
      if (a.dataset.nav === name) a.classList.add("current");
    }
    document.getElementById("who").textContent = `${s.accessKey}${s.admin ? " (admin)" : ""}`;
    const out = document.getElementById("signout");
    out.hidden = false;
    out.addEventListener("click", () => signOut("Signed out."));
  }
  try {
    await PAGES[name]();
  } catch (err) {
    show(document.title.split(" · ")[0], failure(err));
  }
}

main();
