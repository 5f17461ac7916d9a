// Loading rendered frames over a slow line: a priority queue with a small concurrency limit, download
// progress, and a byte-bounded cache of decoded images. The server marks each frame URL immutable, so the
// browser's HTTP cache also keeps them; this cache only saves decoding.

/** Queue priorities, most urgent first. */
export const PRIORITY = { current: 0, currentFull: 1, neighbour: 2, background: 3 };

/** A decoded image and the window it was rendered with. */
export class Frame {
  constructor(bitmap, url) {
    this.bitmap = bitmap;
    this.url = url;
  }

  get bytes() {
    return this.bitmap.width * this.bitmap.height * 4;
  }
}

/** An error answered by the server (problem details), with its status. */
export class LoadError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class FrameLoader {
  /** @param {number} concurrency requests at once; @param {number} budget bytes of decoded images kept */
  constructor(concurrency = 3, budget = 192 * 2 ** 20) {
    this.concurrency = concurrency;
    this.budget = budget;
    this.running = 0;
    this.queue = new Map(); // url → {priority, group, seq, waiters: [{resolve, reject, onProgress}]}
    this.inflight = new Map(); // url → {promise, waiters}
    this.cache = new Map(); // url → Frame, least recently used first
    this.cachedBytes = 0;
    this.seq = 0;
  }

  /** The decoded frame of `url` if it is in memory now. */
  cached(url) {
    const frame = this.cache.get(url);
    if (frame) {
      this.cache.delete(url);
      this.cache.set(url, frame);
    }
    return frame ?? null;
  }

  /**
   * The frame at `url`: from memory, or queued at `priority` in `group` (a group's queued requests can be
   * dropped together). Resolves with null if the request was dropped before it started.
   */
  load(url, priority, group = "", onProgress = null) {
    const hit = this.cached(url);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, onProgress };
      const running = this.inflight.get(url);
      if (running) {
        running.waiters.push(waiter);
        return;
      }
      const queued = this.queue.get(url);
      if (queued) {
        queued.priority = Math.min(queued.priority, priority);
        queued.group = priority <= queued.priority ? group : queued.group;
        queued.waiters.push(waiter);
      } else {
        this.queue.set(url, { priority, group, seq: this.seq++, waiters: [waiter] });
      }
      this.pump();
    });
  }

  /** Drop the queued (not yet started) requests of `group`; their promises resolve with null. */
  drop(group) {
    for (const [url, entry] of this.queue) {
      if (entry.group !== group) continue;
      this.queue.delete(url);
      entry.waiters.forEach((waiter) => waiter.resolve(null));
    }
  }

  pump() {
    while (this.running < this.concurrency && this.queue.size) {
      let best = null;
      for (const [url, entry] of this.queue) {
        if (!best || entry.priority < best[1].priority || (entry.priority === best[1].priority && entry.seq < best[1].seq)) {
          best = [url, entry];
        }
      }
      const [url, entry] = best;
      this.queue.delete(url);
      this.start(url, entry.waiters);
    }
  }

  async start(url, waiters) {
    this.running += 1;
    const flight = { waiters };
    this.inflight.set(url, flight);
    try {
      const blob = await fetchWithProgress(url, (done, total) => flight.waiters.forEach((w) => w.onProgress?.(done, total)));
      const frame = new Frame(await createImageBitmap(blob), url);
      this.keep(url, frame);
      flight.waiters.forEach((waiter) => waiter.resolve(frame));
    } catch (error) {
      flight.waiters.forEach((waiter) => waiter.reject(error));
    } finally {
      this.inflight.delete(url);
      this.running -= 1;
      this.pump();
    }
  }

  keep(url, frame) {
    this.cache.set(url, frame);
    this.cachedBytes += frame.bytes;
    for (const [oldUrl, old] of this.cache) {
      if (this.cachedBytes <= this.budget || oldUrl === url) break;
      this.cache.delete(oldUrl);
      this.cachedBytes -= old.bytes;
      old.bitmap.close?.();
    }
  }
}

/** GET `url` as a Blob, reporting bytes received; a failed request throws a LoadError with the problem's detail. */
async function fetchWithProgress(url, onProgress) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) {
    const problem = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
    throw new LoadError(problem?.detail || response.statusText, response.status);
  }
  const total = Number(response.headers.get("Content-Length")) || 0;
  if (!response.body || !total) return response.blob();
  const reader = response.body.getReader();
  const chunks = [];
  let done = 0;
  for (;;) {
    const { done: finished, value } = await reader.read();
    if (finished) break;
    chunks.push(value);
    done += value.length;
    onProgress(done, total);
  }
  return new Blob(chunks, { type: response.headers.get("Content-Type") || "image/jpeg" });
}
