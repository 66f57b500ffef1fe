// Admission for a policy without limits or budgets: every request is admitted and nothing
// is reserved. The limits/budgets engine (issue [2]) plugs in behind the same interface.
import type { Admission, AdmissionRequest, Ticket } from './types.js';

export type { Admission, AdmissionRequest, Ticket, SettledUsage } from './types.js';

const OPEN_TICKET: Ticket = { headers: {}, settle: () => {} };

export function createAdmission(): Admission {
  return {
    admit: async (_req: AdmissionRequest) => OPEN_TICKET,
    ready: () => true,
    close: async () => {},
  };
}
