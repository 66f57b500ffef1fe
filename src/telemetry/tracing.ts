// A span per request through @opentelemetry/api with GenAI semantic-convention attributes.
// Without an SDK registered by the host this is the API's no-op tracer: it costs a few
// property reads and nothing else.
import { trace, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';

const tracer = trace.getTracer('llm-gateway', '0.1.0');

export function startRequestSpan(operation: string, model: string): Span {
  return tracer.startSpan(`${operation} ${model}`, {
    kind: SpanKind.SERVER,
    attributes: {
      'gen_ai.operation.name': operation,
      'gen_ai.request.model': model,
    },
  });
}

export interface SpanOutcome {
  status: number;
  system?: string;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
  ttftMs?: number;
  finishReason?: string;
  error?: string;
}

export function endRequestSpan(span: Span, o: SpanOutcome): void {
  if (span.isRecording()) {
    span.setAttribute('http.response.status_code', o.status);
    if (o.system) span.setAttribute('gen_ai.system', o.system);
    if (o.responseModel) span.setAttribute('gen_ai.response.model', o.responseModel);
    if (o.inputTokens !== undefined) span.setAttribute('gen_ai.usage.input_tokens', o.inputTokens);
    if (o.outputTokens !== undefined) span.setAttribute('gen_ai.usage.output_tokens', o.outputTokens);
    if (o.finishReason) span.setAttribute('gen_ai.response.finish_reasons', [o.finishReason]);
    if (o.ttftMs !== undefined) span.setAttribute('gen_ai.server.time_to_first_token', o.ttftMs / 1000);
    if (o.error) span.setStatus({ code: SpanStatusCode.ERROR, message: o.error });
  }
  span.end();
}
