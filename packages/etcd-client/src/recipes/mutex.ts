// A distributed mutex is an election whose leader holds the lock: the same on v2 and v3, so both
// mutexes are this one class over their election.

/** What a mutex needs of an election candidate. */
export interface Candidate {
  campaign(value: string, signal?: AbortSignal): Promise<void>;
  resign(): Promise<void>;
  readonly lost: Promise<Error>;
}

export class ElectionMutex<C extends Candidate> {
  constructor(protected readonly election: C) {}

  /** Waits for the lock. */
  lock(signal?: AbortSignal): Promise<void> {
    return this.election.campaign('', signal);
  }

  unlock(): Promise<void> {
    return this.election.resign();
  }

  /** Resolves if the key or lease behind the lock is lost while holding it: stop acting on it. */
  get lost(): Promise<Error> {
    return this.election.lost;
  }
}
