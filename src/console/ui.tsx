import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { ApiError } from './api.js';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString();
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

/** An error or a notice, announced to screen readers. */
export function Notice({ error, children }: { error?: unknown; children?: ComponentChildren }) {
  if (error === undefined || error === null) {
    return children ? (
      <p class="notice" role="status">
        {children}
      </p>
    ) : null;
  }
  return (
    <p class="notice error" role="alert">
      {errorText(error)}
    </p>
  );
}

/**
 * A modal dialog: the browser's own <dialog>, opened with showModal(), which makes the rest of
 * the page inert (focus stays inside) and closes on Escape. Focus goes back to where it was.
 */
export function Dialog({
  title,
  open,
  onClose,
  children,
}: {
  title: string;
  open: boolean;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const returnTo = useRef<Element | null>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) {
      returnTo.current = document.activeElement;
      dialog.showModal();
    } else if (!open && dialog.open) {
      dialog.close();
    }
  }, [open]);
  const titleId = `dialog-${title.replace(/\W+/g, '-').toLowerCase()}`;
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onClose={() => {
        (returnTo.current as HTMLElement | null)?.focus?.();
        onClose();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {open && children}
    </dialog>
  );
}

/** Asks before something that cannot be undone. */
export function Confirm({
  title,
  open,
  action,
  onConfirm,
  onClose,
  children,
}: {
  title: string;
  open: boolean;
  action: string;
  onConfirm: () => void;
  onClose: () => void;
  children: ComponentChildren;
}) {
  return (
    <Dialog title={title} open={open} onClose={onClose}>
      {children}
      <div class="actions">
        <button type="button" class="danger" onClick={onConfirm}>
          {action}
        </button>
        <button type="button" onClick={onClose} autofocus>
          Cancel
        </button>
      </div>
    </Dialog>
  );
}

/** A secret shown once, selectable and copyable. */
export function Secret({ label, value, note }: { label: string; value: string; note?: string }) {
  return (
    <div class="secret">
      <label>
        {label}
        <input readOnly value={value} onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
      </label>
      <button type="button" onClick={() => navigator.clipboard?.writeText(value).catch(() => {})}>
        Copy
      </button>
      <p>{note ?? 'It is shown only now: Wharf keeps only its hash.'}</p>
    </div>
  );
}
