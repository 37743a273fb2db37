import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import sharp, { type Metadata } from 'sharp';
import { isWharfError } from '../core/errors.js';
import type { MediaFacts, MediaKind, MediaProber, PreviewSink } from '../core/processing.js';
import { Scratch } from './scratch.js';
import { configureSharp } from './sharp-renderer.js';

export interface ToolPaths {
  ffmpeg: string;
  ffprobe: string;
  pdfinfo: string;
  pdftoppm: string;
}

type Tool = keyof ToolPaths;

export interface MediaToolSettings {
  /** Longest any one tool may run before it is killed. */
  timeoutSeconds: number;
  /** Files larger than this are not copied out of storage to be inspected. */
  maxInputBytes: number;
}

const NEEDS: Record<MediaKind, Tool[]> = {
  video: ['ffprobe', 'ffmpeg'],
  audio: ['ffprobe'],
  pdf: ['pdfinfo', 'pdftoppm'],
};

/** How each tool says its version (and so that it runs at all). */
const VERSION_ARGS: Record<Tool, string[]> = {
  ffmpeg: ['-version'],
  ffprobe: ['-version'],
  pdfinfo: ['-v'],
  pdftoppm: ['-v'],
};

/** A preview's longest side. */
const PREVIEW_SIZE = 1280;
/** Address space a tool may map: generous for a decoder, fatal for a runaway. */
const MEMORY_LIMIT_BYTES = 2 * 1024 ** 3;
const OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024;

/**
 * The demuxers ffprobe and ffmpeg may open an input with: the containers of the audio and video
 * types the sniffer names (file-type), by ffmpeg's names. Left to probe freely, ffmpeg takes an
 * HLS or concat playlist (even behind an ID3 tag) and opens the files it lists: an uploaded
 * playlist naming `file:///…` would have a server file read in as if it were the upload. And
 * only local files, the temp copy itself, may be opened.
 */
const DEMUXERS = [
  'mov', // mp4, m4a, m4v, mov, 3gp, 3g2, mj2, f4v
  'matroska', // mkv, webm
  'avi',
  'asf', // wmv, wma
  'flv',
  'mpeg',
  'mpegts',
  'mpegvideo',
  'mxf',
  'ogg', // ogv, oga, opus, spx
  'mp3',
  'aac',
  'ac3',
  'eac3',
  'flac',
  'wav',
  'w64',
  'aiff',
  'amr',
  'ape',
  'wv',
  'mpc',
  'mpc8',
  'au',
  'voc',
  'caf',
  'dsf',
  'qcp',
  'rm',
  'm4v',
  'h264',
  'hevc',
  'ivf',
].join(',');
const INPUT_LIMITS = ['-format_whitelist', DEMUXERS, '-protocol_whitelist', 'file'];

class ToolError extends Error {
  constructor(
    readonly code: 'TOOL_TIMEOUT' | 'TOOL_FAILED',
    message: string,
  ) {
    super(message);
  }
}

/**
 * ffprobe/ffmpeg (video, audio) and pdfinfo/pdftoppm (PDF), run on a temp copy of the file
 * (they need seekable input), never through a shell: each is executed directly with its
 * arguments, under a timeout (SIGKILL) and, where util-linux's prlimit exists, limits on
 * address space and CPU time. Tools that are missing are found at start; the kinds that need
 * them are then recorded as such in each asset's analysis.
 */
export class MediaTools implements MediaProber {
  private readonly present = new Set<Tool>();
  private prlimit: string | undefined;

  constructor(
    private readonly paths: ToolPaths,
    private readonly scratch: Scratch,
    private readonly settings: MediaToolSettings,
  ) {
    configureSharp();
  }

  /** Finds out which tools run here; returns those that do not (for the start-up log). */
  async detect(): Promise<{ missing: Record<Tool, string>; present: Tool[] }> {
    const missing = {} as Record<Tool, string>;
    // The tools' own list, not the keys of `paths`: the configuration object passed in also
    // holds the limits (timeoutSeconds, maxInputBytes), which are not commands to try.
    await Promise.all(
      (Object.keys(VERSION_ARGS) as Tool[]).map(async (tool) => {
        try {
          await run(this.paths[tool], VERSION_ARGS[tool], 10);
          this.present.add(tool);
        } catch {
          missing[tool] = this.paths[tool];
        }
      }),
    );
    try {
      await run('prlimit', ['--version'], 10);
      this.prlimit = 'prlimit';
    } catch {
      this.prlimit = undefined;
    }
    return { missing, present: [...this.present] };
  }

  missingTools(kind: MediaKind): string[] {
    return NEEDS[kind].filter((tool) => !this.present.has(tool));
  }

  async inspect(kind: MediaKind, source: Readable, size: number, preview?: PreviewSink): Promise<MediaFacts> {
    if (size > this.settings.maxInputBytes) {
      source.destroy();
      return { error: 'TOO_LARGE' };
    }
    return this.scratch.withDir(async (dir) => {
      const input = join(dir, 'input');
      await Scratch.save(source, input);
      try {
        if (kind === 'pdf') return await this.pdf(dir, input, preview);
        return await this.audioVisual(kind, dir, input, preview);
      } catch (err) {
        if (err instanceof ToolError) return { error: err.code };
        throw err;
      }
    });
  }

  private async audioVisual(
    kind: 'video' | 'audio',
    dir: string,
    input: string,
    preview: PreviewSink | undefined,
  ): Promise<MediaFacts> {
    const out = await this.tool('ffprobe', [
      '-v',
      'error',
      '-print_format',
      'json',
      '-show_format',
      '-show_streams',
      ...INPUT_LIMITS,
      input,
    ]);
    const probed = JSON.parse(out) as FfprobeOutput;
    const facts: MediaFacts = {};
    const duration = Number(probed.format?.duration);
    if (Number.isFinite(duration)) facts.duration = Math.round(duration * 1000) / 1000;
    const video = probed.streams?.find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
    const audio = probed.streams?.find((s) => s.codec_type === 'audio');
    if (kind === 'audio' || !video) {
      if (audio?.codec_name) facts.codec = audio.codec_name;
      return facts;
    }
    if (video.codec_name) facts.codec = video.codec_name;
    if (audio?.codec_name) facts.audioCodec = audio.codec_name;
    if (video.width && video.height) {
      // Phones record sideways and say so in the stream's display matrix: report what shows.
      const turned = Math.abs(rotation(video)) % 180 === 90;
      facts.width = turned ? video.height : video.width;
      facts.height = turned ? video.width : video.height;
    }
    if (preview) {
      const poster = join(dir, 'poster.jpg');
      // A second in, past fade-ins and black leaders, unless the clip is shorter than that.
      const at = facts.duration !== undefined && facts.duration > 2 ? 1 : 0;
      await this.tool('ffmpeg', [
        '-nostdin',
        '-v',
        'error',
        '-ss',
        String(at),
        ...INPUT_LIMITS,
        '-i',
        input,
        '-map',
        '0:v:0',
        '-frames:v',
        '1',
        '-vf',
        `scale='min(${PREVIEW_SIZE},iw)':'min(${PREVIEW_SIZE},ih)':force_original_aspect_ratio=decrease`,
        '-an',
        '-sn',
        '-dn',
        '-threads',
        '1',
        '-f',
        'image2',
        '-c:v',
        'mjpeg',
        '-q:v',
        '3',
        poster,
      ]);
      facts.preview = await this.handOver(poster, 'jpeg', preview);
    }
    return facts;
  }

  private async pdf(dir: string, input: string, preview: PreviewSink | undefined): Promise<MediaFacts> {
    const info = await this.tool('pdfinfo', [input]);
    const pages = /^Pages:\s+(\d+)/m.exec(info)?.[1];
    const facts: MediaFacts = {};
    if (pages !== undefined) facts.pages = Number(pages);
    if (preview) {
      const prefix = join(dir, 'page');
      await this.tool('pdftoppm', [
        '-f',
        '1',
        '-l',
        '1',
        '-singlefile',
        '-png',
        '-scale-to',
        String(PREVIEW_SIZE),
        input,
        prefix,
      ]);
      facts.preview = await this.handOver(`${prefix}.png`, 'png', preview);
    }
    return facts;
  }

  /** Streams a made preview to the sink, with its size read from its header. */
  private async handOver(path: string, format: 'jpeg' | 'png', sink: PreviewSink) {
    let meta: Metadata;
    try {
      meta = await sharp(path).metadata();
    } catch {
      throw new ToolError('TOOL_FAILED', 'The tool made no readable preview.');
    }
    await sink(createReadStream(path), format);
    return { width: meta.width ?? 0, height: meta.height ?? 0, format: format === 'jpeg' ? 'jpg' : 'png' };
  }

  private async tool(tool: Tool, args: string[]): Promise<string> {
    if (!this.present.has(tool)) throw new ToolError('TOOL_FAILED', `${tool} is not available.`);
    const seconds = this.settings.timeoutSeconds;
    // prlimit execs the tool itself (no shell): the limits apply to it and what it starts.
    const [command, argv] = this.prlimit
      ? [this.prlimit, [`--as=${MEMORY_LIMIT_BYTES}`, `--cpu=${seconds}`, '--', this.paths[tool], ...args]]
      : [this.paths[tool], args];
    try {
      return await run(command, argv, seconds);
    } catch (err) {
      if (isWharfError(err)) throw err;
      const timedOut = (err as { killed?: boolean }).killed === true;
      throw new ToolError(timedOut ? 'TOOL_TIMEOUT' : 'TOOL_FAILED', `${tool} failed: ${String(err)}`);
    }
  }
}

function run(command: string, args: string[], timeoutSeconds: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        timeout: timeoutSeconds * 1000,
        killSignal: 'SIGKILL',
        maxBuffer: OUTPUT_LIMIT_BYTES,
        // Nothing of Wharf's environment (secrets, credentials) reaches a tool.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
        encoding: 'utf8',
      },
      (err, stdout) => {
        if (err) reject(err);
        else resolve(stdout);
      },
    );
  });
}

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  disposition?: { attached_pic?: number };
  tags?: { rotate?: string };
  side_data_list?: Array<{ rotation?: number }>;
}

interface FfprobeOutput {
  format?: { duration?: string };
  streams?: FfprobeStream[];
}

function rotation(stream: FfprobeStream): number {
  const side = stream.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  if (side !== undefined) return side;
  return Number(stream.tags?.rotate ?? 0) || 0;
}
