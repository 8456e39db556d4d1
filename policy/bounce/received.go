package bounce

// ParseReceived reads one Received field value (unfolded or not) into a
// Hop. `backscatter-milter test` takes a message's envelope defaults from
// its topmost Received field with it: one Received parser in the tree.
func ParseReceived(value string) Hop { return parseReceived(value) }
