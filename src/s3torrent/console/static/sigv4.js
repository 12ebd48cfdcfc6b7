// AWS Signature Version 4 in the page (WebCrypto HMAC-SHA256): the console calls the S3 and
// admin APIs exactly as any SDK does, so the server's one access decision answers it.
// The session keeps the day's derived signing key, never the secret itself.

const enc = new TextEncoder();

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function hmac(key, text) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return crypto.subtle.sign("HMAC", k, enc.encode(text));
}

export async function sha256Hex(data) {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

// RFC 3986 unreserved characters stay; everything else is %XX, as SigV4 wants.
export function awsEncode(text) {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

export function encodePath(path) {
  return path.split("/").map(awsEncode).join("/");
}

function stamp(now) {
  const iso = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  return { amzDate: iso, day: iso.slice(0, 8) };
}

function toB64(buf) {
  return btoa(String.fromCharCode(...new Uint8Array(buf)));
}

function fromB64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

// The signing key of one UTC day: kSecret is dropped as soon as it is derived.
export async function deriveSession(accessKey, secretKey, region) {
  const { day } = stamp(new Date());
  let k = await hmac(enc.encode("AWS4" + secretKey), day);
  k = await hmac(k, region);
  k = await hmac(k, "s3");
  k = await hmac(k, "aws4_request");
  return { accessKey, region, day, key: toB64(k) };
}

// A fetch signed for `session`. path is unencoded ("/bucket/key"); query a list of pairs;
// body null, a string or bytes (or, with unsignedPayload, a Blob the browser streams).
export async function signedFetch(session, method, path, options = {}) {
  const { query = [], headers = {}, body = null, unsignedPayload = false } = options;
  const now = new Date();
  const { amzDate, day } = stamp(now);
  if (day !== session.day) {
    throw new Error("the signing key was for another day: sign in again");
  }
  const payload = unsignedPayload
    ? "UNSIGNED-PAYLOAD"
    : await sha256Hex(body === null ? "" : body);
  const all = { ...headers, "x-amz-date": amzDate, "x-amz-content-sha256": payload };
  const signed = { host: location.host };
  for (const [k, v] of Object.entries(all)) signed[k.toLowerCase()] = String(v).trim();
  const names = Object.keys(signed).sort();
  const canonicalQuery = query
    .map(([k, v]) => [awsEncode(k), awsEncode(v ?? "")])
    .sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const uri = encodePath(path);
  const canonical = [
    method,
    uri,
    canonicalQuery,
    names.map((n) => `${n}:${signed[n]}\n`).join(""),
    names.join(";"),
    payload,
  ].join("\n");
  const scope = `${day}/${session.region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256Hex(canonical)].join("\n");
  const signature = hex(await hmac(fromB64(session.key), toSign));
  const auth =
    `AWS4-HMAC-SHA256 Credential=${session.accessKey}/${scope}, ` +
    `SignedHeaders=${names.join(";")}, Signature=${signature}`;
  const sent = { ...all, Authorization: auth };
  const url = uri + (canonicalQuery ? "?" + canonicalQuery : "");
  return fetch(url, { method, headers: sent, body, cache: "no-store", credentials: "omit" });
}
