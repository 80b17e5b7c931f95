/**
 * Something with a batching window: the hub's channels.
 *
 * @internal
 */
export interface Windowed {
  windowOpen: boolean;
  deadline: number;
}

/**
 * Batching windows of one hub, on one timer. Every window has the same length, so windows close
 * in the order they opened and a FIFO of open windows is already sorted by deadline.
 *
 * @internal
 */
export interface WindowScheduler<T extends Windowed> {
  /** Opens `item`'s window at `now` (`performance.now()`). */
  open(item: T, now: number): void;
  /** Forgets every open window and stops the timer. */
  clear(): void;
}

/**
 * Creates the scheduler.
 *
 * @param length Window length in milliseconds.
 * @param onDue Called for each window that closed (`windowOpen` already false). A throw is
 *   reported to `onError` and costs that window only.
 * @param onError Receives what `onDue` threw.
 *
 * @internal
 */
export function createWindowScheduler<T extends Windowed>(
  length: number,
  onDue: (item: T, now: number) => void,
  onError: (item: T, error: unknown) => void,
): WindowScheduler<T> {
  let windows: T[] = [];
  let head = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // True while due windows close: the loop re-arms the timer itself once it knows the next deadline.
  let running = false;
  let cleared = false;

  const closeDue = () => {
    timer = undefined;
    running = true;
    const now = performance.now();
    // Timers may fire a fraction of a millisecond early; treat those windows as due.
    while (head < windows.length && (windows[head] as T).deadline <= now + 1) {
      const item = windows[head++] as T;
      item.windowOpen = false;
      try {
        onDue(item, now);
      } catch (error) {
        onError(item, error);
      }
    }
    running = false;
    if (head > 1024 && head * 2 > windows.length) {
      windows = windows.slice(head);
      head = 0;
    }
    const next = windows[head];
    if (next && !cleared) timer = setTimeout(closeDue, Math.max(0, next.deadline - now));
  };

  return {
    open(item, now) {
      item.windowOpen = true;
      item.deadline = now + length;
      windows.push(item);
      if (timer === undefined && !running && !cleared) timer = setTimeout(closeDue, length);
    },
    clear() {
      cleared = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      windows = [];
      head = 0;
    },
  };
}
