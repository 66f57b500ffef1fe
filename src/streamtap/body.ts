// The chat/completions body summary, kept under its old name for its callers: the byte scan
// is util/usage-scan.ts, the keys are the OpenAI protocols' (protocols/openai.ts).
export { summariseChatBody as summariseBody } from '../protocols/openai.js';
