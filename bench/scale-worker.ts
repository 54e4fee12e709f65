/**
 * One scale run in a process of its own, so that memory figures start clean: prints the ScaleRow as JSON.
 * Usage: node --expose-gc --import tsx bench/scale-worker.ts <variant index> <locks> <endpoints> <prefix> <plan JSON>
 */
import { runScale, SCALE_VARIANTS, type ScalePlan } from './scale.js';

const [variantIndex = '', locks = '', endpoints = '', prefix = '', plan = ''] = process.argv.slice(2);
const variant = SCALE_VARIANTS[Number(variantIndex)];
if (!variant) throw new Error(`no scale variant ${variantIndex}`);
const row = await runScale(variant, Number(locks), endpoints.split(','), prefix, JSON.parse(plan) as ScalePlan);
process.stdout.write(`${JSON.stringify(row)}\n`);
// etcd3 may keep a reconnect timer for a moment after close; the row is out, so do not wait for it.
process.exit(0);
