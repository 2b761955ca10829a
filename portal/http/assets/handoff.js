// Sends the sign-in hand-off form on at once; without scripts the button does the same.
document.getElementById('handoff')?.submit();
