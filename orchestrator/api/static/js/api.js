// Calls to /api/v1: JSON in, JSON out; an error is an ApiError carrying the problem
// document's `title` and `detail` (RFC 9457), which the pages show as they are.
//
// With tokens configured every call needs one: the dashboard keeps the one the user gave in
// localStorage and sends it as a bearer token. Without tokens (loopback) none is sent.

export const API = "/api/v1";
const TOKEN_KEY = "baton.token";

export class ApiError extends Error {
  constructor(status, title, detail, problem = null) {
    super(`${title}: ${detail}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.problem = problem;
  }
}

export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** A query string of the non-empty values, "" when there is none. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== null && value !== undefined && value !== "") q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

async function problemOf(response) {
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    try {
      const doc = await response.json();
      return new ApiError(response.status, doc.title ?? `HTTP ${response.status}`,
        doc.detail ?? "", doc);
    } catch { /* not JSON after all: fall through */ }
  }
  return new ApiError(response.status, `HTTP ${response.status}`, response.statusText || "the server answered with an error");
}

/** `path` under /api/v1; `body` (an object) is sent as JSON. */
export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${API}${path}`, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "Cannot reach the API", `${err.message} (is the server still running?)`);
  }
  if (!response.ok) {
    const problem = await problemOf(response);
    if (problem.status === 401) document.dispatchEvent(new CustomEvent("baton:unauthorized", { detail: problem }));
    throw problem;
  }
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => call(path, options);
export const post = (path, body, options = {}) => call(path, { ...options, method: "POST", body });
