import { WharfError } from '../core/errors.js';

/**
 * S3 POST Object policies: the document a form carries (base64 JSON) and the rules S3
 * applies to it. Field names are compared lower-cased, as S3 and its SDKs do (the JS SDK
 * writes `X-Amz-Date`, boto3 `x-amz-date`, both are accepted); values exactly.
 */

export type PolicyCondition =
  | Record<string, string>
  | ['eq' | 'starts-with', string, string]
  | ['content-length-range', number, number];

export interface PolicyDocument {
  expiration: string;
  conditions: PolicyCondition[];
}

export interface PolicyOutcome {
  key: string;
  minSize: number;
  maxSize: number;
  /** The exact Content-Type the policy requires, if it names one. */
  contentType?: string | undefined;
}

// Fields S3 never requires a condition for: the proof itself and the file.
const UNCONDITIONED = new Set(['policy', 'x-amz-signature', 'file']);
const NO_MAX_SIZE = Number.MAX_SAFE_INTEGER;

/** S3's ISO 8601 without milliseconds, as the AWS SDK writes expirations. */
export function iso8601(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function encodePolicy(document: PolicyDocument): string {
  return Buffer.from(JSON.stringify(document), 'utf8').toString('base64');
}

export function decodePolicy(policy: string): PolicyDocument {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(policy)) throw new Error('not base64');
    parsed = JSON.parse(Buffer.from(policy, 'base64').toString('utf8'));
  } catch {
    throw invalidPolicy('Invalid Policy: Invalid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalidPolicy('Invalid Policy: Invalid JSON.');
  }
  const { expiration, conditions } = parsed as Record<string, unknown>;
  if (typeof expiration !== 'string') {
    throw invalidPolicy('Invalid Policy: Policy missing expiration.');
  }
  if (!Array.isArray(conditions)) {
    throw invalidPolicy('Invalid Policy: Policy missing conditions.');
  }
  return { expiration, conditions: conditions as PolicyCondition[] };
}

/** Lower-cases field names; a name given twice (in any case) is refused, as S3 does. */
export function normalizeFields(fields: Record<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(fields)) {
    const lower = name.toLowerCase();
    if (out.has(lower)) {
      throw new WharfError('VALIDATION_FAILED', `POST requires exactly one ${lower} field per request.`);
    }
    out.set(lower, value);
  }
  return out;
}

/**
 * Applies every condition of the policy to the form's fields (the bucket condition to the
 * bucket the form was posted to) and checks no field went unconditioned. The size range is
 * returned: only the file's stream can meet it.
 */
export function evaluatePolicy(
  document: PolicyDocument,
  fields: Map<string, string>,
  bucket: string,
  now: number,
): PolicyOutcome {
  const expiresAt = parseIso8601(document.expiration);
  if (expiresAt === undefined) throw invalidPolicy('Invalid Policy: Invalid expiration.');
  if (now > expiresAt) throw violation('Invalid according to Policy: Policy expired.');

  const key = fields.get('key');
  if (key === undefined) {
    throw new WharfError('VALIDATION_FAILED', "Bucket POST must contain a field named 'key'.");
  }
  const covered = new Set<string>();
  let minSize = 0;
  let maxSize = NO_MAX_SIZE;
  let contentType: string | undefined;

  const fieldValue = (name: string): string | undefined => (name === 'bucket' ? bucket : fields.get(name));

  for (const condition of document.conditions) {
    const shown = JSON.stringify(condition);
    const failed = () => violation(`Invalid according to Policy: Policy Condition failed: ${shown}`);
    if (Array.isArray(condition)) {
      const [op, subject, operand] = condition as unknown[];
      const verb = typeof op === 'string' ? op.toLowerCase() : '';
      if (verb === 'content-length-range') {
        const min = toSize(subject);
        const max = toSize(operand);
        if (condition.length !== 3 || min === undefined || max === undefined) {
          throw invalidPolicy(`Invalid Policy: Invalid content-length-range condition: ${shown}`);
        }
        // Several ranges all apply: the file must meet the tightest.
        minSize = Math.max(minSize, min);
        maxSize = Math.min(maxSize, max);
        continue;
      }
      if (
        (verb !== 'eq' && verb !== 'starts-with') ||
        condition.length !== 3 ||
        typeof subject !== 'string' ||
        !subject.startsWith('$') ||
        typeof operand !== 'string'
      ) {
        throw invalidPolicy(`Invalid Policy: Invalid Simple-Condition: ${shown}`);
      }
      const name = subject.slice(1).toLowerCase();
      covered.add(name);
      const value = fieldValue(name);
      if (value === undefined) throw failed();
      if (verb === 'eq') {
        if (value !== operand) throw failed();
        if (name === 'content-type') contentType = operand;
      } else if (!startsWith(name, value, operand)) {
        throw failed();
      }
      continue;
    }
    if (typeof condition !== 'object' || condition === null) {
      throw invalidPolicy(`Invalid Policy: Invalid Simple-Condition: ${shown}`);
    }
    const entries = Object.entries(condition);
    if (entries.length !== 1 || typeof entries[0]![1] !== 'string') {
      throw invalidPolicy(`Invalid Policy: Invalid Simple-Condition: ${shown}`);
    }
    const [rawName, expected] = entries[0] as [string, string];
    const name = rawName.toLowerCase();
    covered.add(name);
    if (fieldValue(name) !== expected) throw failed();
    if (name === 'content-type') contentType = expected;
  }

  const extra = [...fields.keys()].filter(
    (name) => !UNCONDITIONED.has(name) && !name.startsWith('x-ignore-') && !covered.has(name),
  );
  if (extra.length > 0) {
    throw violation(`Invalid according to Policy: Extra input fields: ${extra.join(', ')}`);
  }
  if (minSize > maxSize) throw invalidPolicy('Invalid Policy: content-length-range is empty.');
  return { key, minSize, maxSize, contentType };
}

/** S3 lets a Content-Type starts-with cover a comma-separated list: every entry must match. */
function startsWith(name: string, value: string, prefix: string): boolean {
  if (name !== 'content-type') return value.startsWith(prefix);
  return value.split(',').every((part) => part.trim().startsWith(prefix));
}

function toSize(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function parseIso8601(value: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

function violation(message: string): WharfError {
  // S3 answers 403 AccessDenied for every unmet condition, expiry included.
  return new WharfError('FORBIDDEN', message);
}

function invalidPolicy(message: string): WharfError {
  return new WharfError('VALIDATION_FAILED', message);
}
