package session

// Waiting: the session must start an agent but the cap on live agents is
// reached and no live session could be hibernated; it starts, in the order
// of its oldest waiting message, as soon as a slot frees.
const Waiting State = "waiting"

// StopHibernated: the agent was stopped to free a live slot for another
// chat; the next message resumes the conversation.
const StopHibernated StopReason = "hibernated"
