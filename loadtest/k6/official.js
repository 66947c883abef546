// The official test's load phases (débitos, créditos, extratos: a ramp from 1 to 220, 110
// and 10 arrivals per second, then as many for as long), driven by k6 instead of our
// loadtest: a second, heavier generator on the same machine, as the official Gatling is.
// Each request on a new connection, like each Gatling user. No validation phase.
//   k6 run -e TARGET=http://127.0.0.1:9999 -e RATE=1 -e SCALE=1 loadtest/k6/official.js
// The summary (JSON on stdout at the end) has med, p(99) and max per request name.
import http from "k6/http";
import { check } from "k6";

const target = __ENV.TARGET || "http://127.0.0.1:9999";
const rate = Number(__ENV.RATE || 1);
const scale = Number(__ENV.SCALE || 1);
const phase = `${Math.round(120 * scale)}s`;

function scenario(fn, peak) {
  return {
    executor: "ramping-arrival-rate",
    exec: fn,
    startRate: rate,
    timeUnit: "1s",
    preAllocatedVUs: 50,
    maxVUs: 2000,
    stages: [
      { target: peak * rate, duration: phase },
      { target: peak * rate, duration: phase },
    ],
  };
}

const names = ["debitos", "creditos", "extratos"];
export const options = {
  noConnectionReuse: true,
  discardResponseBodies: false,
  summaryTrendStats: ["med", "p(99)", "max", "count"],
  scenarios: {
    debitos: scenario("debitos", 220),
    creditos: scenario("creditos", 110),
    extratos: scenario("extratos", 10),
  },
  // Sub-metrics per request name, so the summary reports each.
  thresholds: Object.fromEntries(names.map((n) => [`http_req_duration{name:${n}}`, ["max>=0"]])),
};

const client = () => 1 + Math.floor(Math.random() * 5);
const descricao = () => Math.random().toString(36).slice(2, 12) || "x";
const params = (name) => ({ headers: { "Content-Type": "application/json" }, tags: { name } });

function transact(tipo, name, ok) {
  const body = JSON.stringify({ valor: 1 + Math.floor(Math.random() * 10000), tipo, descricao: descricao() });
  const res = http.post(`${target}/clientes/${client()}/transacoes`, body, params(name));
  check(res, { [`${name} status`]: (r) => ok.includes(r.status) });
}

export function debitos() {
  transact("d", "debitos", [200, 422]);
}

export function creditos() {
  transact("c", "creditos", [200]);
}

export function extratos() {
  const res = http.get(`${target}/clientes/${client()}/extrato`, params("extratos"));
  check(res, { "extratos status": (r) => r.status === 200 });
}

export function handleSummary(data) {
  const out = { rate, scale, failed_checks: data.metrics.checks ? data.metrics.checks.values.fails : null };
  for (const n of names) {
    const m = data.metrics[`http_req_duration{name:${n}}`];
    if (m) out[n] = { count: m.values.count, p50_ms: m.values.med, p99_ms: m.values["p(99)"], max_ms: m.values.max };
  }
  return { stdout: JSON.stringify(out) + "\n" };
}
