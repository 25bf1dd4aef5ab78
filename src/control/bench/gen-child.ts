/**
 * Child process of GeneratorProcess (trafficgen.ts), started inside a namespace: reads one JSON
 * request per line on stdin (a SendRequest with the frame in hex), sends the frames, and
 * answers one line ({sent, seconds} or {error}). Programs are cached per frame. Exits when stdin
 * closes.
 */
import { createInterface } from 'node:readline';
import '../../sys/index.ts';
import type { Program } from '../../kernel/program.ts';
import { generatorProgram, sendFrames, type SendRequest } from './trafficgen.ts';

const programs = new Map<string, Program>();

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let answer: string;
  try {
    const r = JSON.parse(line) as Omit<SendRequest, 'frame'> & { frame: string };
    const frame = Uint8Array.from(Buffer.from(r.frame, 'hex'));
    let prog = programs.get(r.frame);
    if (!prog) {
      prog = generatorProgram(frame);
      programs.set(r.frame, prog);
    }
    answer = JSON.stringify(sendFrames({ ...r, frame }, prog));
  } catch (err) {
    answer = JSON.stringify({ error: (err as Error).message });
  }
  process.stdout.write(answer + '\n');
}
for (const p of programs.values()) p.close();
