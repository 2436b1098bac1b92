// A reference Server-Sent Events parser for tests that look at raw bytes
// (WHATWG HTML, "Server-sent events", 9.2.6 Interpreting an event stream):
// lines end in CRLF, LF or CR; ":" lines are comments; "data" lines of one
// event are joined with "\n"; an empty line dispatches the event.

/**
 * Parse a complete event stream text into [{ event, data, id, retry }].
 * Events with no data lines are not dispatched (as in the spec). A trailing
 * event without its blank line is incomplete and dropped (reported in
 * `.incomplete` on the returned array).
 */
export function parseSse(text) {
  const events = [];
  let data = [];
  let event = '';
  let id;
  let retry;
  let sawField = false;
  const lines = text.split(/\r\n|\n|\r/);
  const complete = /(\r\n|\n|\r)$/.test(text);
  if (complete) lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const last = i === lines.length - 1 && !complete;
    if (last) break; // a line without its end-of-line is not a line yet
    if (line === '') {
      if (data.length) events.push({ event: event || 'message', data: data.join('\n'), id, retry });
      data = [];
      event = '';
      retry = undefined;
      sawField = false;
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    sawField = true;
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
  }
  events.incomplete = sawField || data.length > 0 || (!complete && lines.length > 0 && lines[lines.length - 1] !== '');
  return events;
}

/** The JSON payloads of an OpenAI-style stream, up to (not including) [DONE]; `.done` says whether [DONE] came. */
export function openaiChunks(text) {
  const out = [];
  out.done = false;
  for (const ev of parseSse(text)) {
    if (ev.data === '[DONE]') {
      out.done = true;
      break;
    }
    out.push(JSON.parse(ev.data));
  }
  return out;
}
